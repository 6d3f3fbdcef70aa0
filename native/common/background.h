// One background thread that runs posted jobs in order. Its destructor never waits: it only asks
// the thread to exit once the queue is empty, so a job may even hold the last reference to the
// thread's owner (the thread then ends right after destroying it). join() is the waiting stop.
#pragma once

#include <functional>
#include <future>
#include <memory>
#include <thread>

namespace vl3 {

class BackgroundThread {
 public:
  BackgroundThread();
  ~BackgroundThread();
  BackgroundThread(const BackgroundThread&) = delete;
  BackgroundThread& operator=(const BackgroundThread&) = delete;

  /**
   * Queues `job`; the future holds its completion or its exception (get() rethrows it). After
   * join(), the future holds an ABORTED error instead.
   */
  std::future<void> post(std::function<void()> job);

  /** Runs what is queued, then ends the thread and waits for it (never call it from a job). */
  void join();

  struct Queue;  // the jobs and the quit flag, shared with the thread

 private:
  std::shared_ptr<Queue> queue_;  // shared with the thread, which may outlive this object
  std::thread thread_;
};

}  // namespace vl3
