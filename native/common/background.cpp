#include "common/background.h"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <system_error>

#include "common/status.h"

namespace vl3 {

struct BackgroundThread::Queue {
  std::mutex mutex;
  std::condition_variable ready;
  struct Job {
    std::function<void()> fn;
    std::promise<void> done;  // holds only the outcome, never the job: no cycle through the owner's future
  };
  std::deque<Job> jobs;
  bool quit = false;
};

namespace {

// The thread: runs jobs in order until asked to quit with nothing left.
void run_jobs(const std::shared_ptr<BackgroundThread::Queue>& q) {
  for (;;) {
    BackgroundThread::Queue::Job job;
    {
      std::unique_lock<std::mutex> lock(q->mutex);
      q->ready.wait(lock, [&] { return q->quit || !q->jobs.empty(); });
      if (q->jobs.empty()) return;  // quit, and nothing left
      job = std::move(q->jobs.front());
      q->jobs.pop_front();
    }
    try {
      job.fn();
      job.fn = nullptr;  // release what it captured (maybe this thread's owner) before reporting
      job.done.set_value();
    } catch (...) {
      job.fn = nullptr;
      job.done.set_exception(std::current_exception());
    }
  }
}

}  // namespace

BackgroundThread::BackgroundThread() : queue_(std::make_shared<Queue>()) {
  try {
    thread_ = std::thread(run_jobs, queue_);
  } catch (const std::system_error& e) {
    throw Error(ErrorCode::OutOfMemory, std::string("Cannot start a background thread: ") + e.what());
  }
}

BackgroundThread::~BackgroundThread() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(queue_->mutex);
    queue_->quit = true;
  }
  queue_->ready.notify_one();
  thread_.detach();  // the thread finishes what is queued, then exits; it may be this thread
}

void BackgroundThread::join() {
  {
    std::lock_guard<std::mutex> lock(queue_->mutex);
    queue_->quit = true;
  }
  queue_->ready.notify_one();
  if (thread_.joinable()) thread_.join();
}

std::future<void> BackgroundThread::post(std::function<void()> job) {
  Queue::Job item{std::move(job), {}};
  std::future<void> done = item.done.get_future();
  {
    std::lock_guard<std::mutex> lock(queue_->mutex);
    if (!queue_->quit) {
      queue_->jobs.push_back(std::move(item));
      queue_->ready.notify_one();
      return done;
    }
  }
  item.done.set_exception(std::make_exception_ptr(Error(ErrorCode::Aborted, "The background thread was stopped")));
  return done;
}

}  // namespace vl3
