#include "model/videollama3.h"

#include <algorithm>
#include <cmath>
#include <chrono>
#include <cstdlib>
#include <thread>

#include "common/status.h"
#include "ggml-cpu.h"
#include "model/gguf_names.h"

namespace vl3 {
namespace key = names::key;

namespace {

/** A CPU backend running on `pool` (created with `threads` workers when still null). */
ggml_backend_t start_cpu_backend(int threads, ggml_threadpool*& pool) {
  ggml_backend_t b = ggml_backend_cpu_init();
  check(b != nullptr, ErrorCode::Internal, "The ggml CPU backend failed to start");
  if (pool == nullptr) {
    ggml_threadpool_params tp = ggml_threadpool_params_default(threads);
    pool = ggml_threadpool_new(&tp);
  }
  if (pool != nullptr) ggml_backend_cpu_set_threadpool(b, pool);
  return b;
}

}  // namespace

VideoLlama3::VideoLlama3(const std::string& llm_path, const std::string& vision_path, int threads, Device device,
                         int64_t gpu_layers)
    : threads_(std::max(1, threads)) {
  install_ggml_hooks();
  ggml_backend_dev_t gpu = nullptr;
  for (size_t i = 0; i < ggml_backend_dev_count() && gpu == nullptr; ++i) {
    ggml_backend_dev_t dev = ggml_backend_dev_get(i);
    if (ggml_backend_dev_type(dev) == GGML_BACKEND_DEVICE_TYPE_GPU) gpu = dev;
  }
  check(device != Device::Cuda || gpu != nullptr, ErrorCode::DeviceUnavailable,
        "device 'cuda' was requested but no CUDA device is available: this addon has no CUDA backend "
        "(build one with `npm run build:cuda`) or no NVIDIA driver and GPU were found; use device 'auto' to fall back to the CPU");
  if (gpu != nullptr && device != Device::Cpu) {
    backend_ = ggml_backend_dev_init(gpu, nullptr);
    check(backend_ != nullptr, ErrorCode::Internal, format("The ggml %s backend failed to start", ggml_backend_dev_name(gpu)));
    device_name_ = ggml_backend_dev_name(gpu);
    if (gpu_layers >= 0) cpu_ = start_cpu_backend(threads_, threadpool_);  // some decoder layers may stay on the CPU
  } else {
    if (device == Device::Auto) device_note_ = "no GPU device: this addon has no CUDA backend, or no NVIDIA driver and GPU were found";
    backend_ = start_cpu_backend(threads_, threadpool_);
    // Test hook (test/generate.test.ts): a second CPU backend stands in for the CPU side of a GPU
    // model, so the split path (per-layer placement, a KV cache in two parts, the ggml scheduler)
    // runs and is checked on machines without a GPU. Nothing else reads this variable.
    if (gpu_layers >= 0 && std::getenv("VL3_TEST_SPLIT_CPU") != nullptr) cpu_ = start_cpu_backend(threads_, threadpool_);
  }
  alloc_ = ggml_gallocr_new(ggml_backend_get_default_buffer_type(backend_));
  try {
    GgufFile llm_file(llm_path);
    GgufFile vision_file(vision_path);
    llm_ = std::make_unique<Qwen2Model>(llm_file, backend_, cpu_, gpu_layers);
    vision_ = std::make_unique<VisionEncoder>(vision_file, backend_);
    tokenizer_ = std::make_unique<Tokenizer>(llm_file);
    weight_bytes_ = llm_->weight_bytes() + vision_->weight_bytes();
    check(vision_->projector().output_dim() == llm_->hparams().dim, ErrorCode::InvalidModel,
          format("%s projects to width %lld but %s is %lld wide: the two files are from different models",
                 vision_path.c_str(), static_cast<long long>(vision_->projector().output_dim()), llm_path.c_str(),
                 static_cast<long long>(llm_->hparams().dim)));
    auto mean = vision_file.get_floats(key::imageMean), sd = vision_file.get_floats(key::imageStd);
    auto finite3 = [](const std::vector<double>& v) {
      return v.size() == 3 && std::isfinite(static_cast<float>(v[0])) && std::isfinite(static_cast<float>(v[1])) &&
             std::isfinite(static_cast<float>(v[2]));
    };
    check(finite3(mean) && finite3(sd) && sd[0] > 0 && sd[1] > 0 && sd[2] > 0, ErrorCode::InvalidModel,
          format("%s: image mean/std must have 3 finite entries, the std's positive", vision_path.c_str()));
    for (int c = 0; c < 3; ++c) {
      pre_.mean[c] = static_cast<float>(mean[static_cast<size_t>(c)]);
      pre_.std[c] = static_cast<float>(sd[static_cast<size_t>(c)]);
    }
    pre_.image_min_pixels = static_cast<int64_t>(vision_file.get_uint(key::imageMinPixels));
    pre_.image_max_pixels = static_cast<int64_t>(vision_file.get_uint(key::imageMaxPixels));
    pre_.image_merge = static_cast<int64_t>(vision_file.get_uint(key::imageMergeSize));
    pre_.video_min_pixels = static_cast<int64_t>(vision_file.get_uint(key::videoMinPixels));
    pre_.video_max_pixels = static_cast<int64_t>(vision_file.get_uint(key::videoMaxPixels));
    pre_.video_merge = static_cast<int64_t>(vision_file.get_uint(key::videoMergeSize));
    pre_.fps = static_cast<float>(vision_file.get_float(key::videoFps));
    pre_.min_frames = static_cast<int64_t>(vision_file.get_uint(key::videoMinFrames));
    pre_.max_frames = static_cast<int64_t>(vision_file.get_uint(key::videoMaxFrames));
    pre_.prune_threshold = static_cast<float>(vision_file.get_float(key::videoPruneThreshold));
    pre_.use_token_compression = vision_file.get_bool(key::videoUseCompression);
    image_token_id_ = static_cast<int32_t>(vision_file.get_uint(key::imageTokenId));
    video_token_id_ = static_cast<int32_t>(vision_file.get_uint(key::videoTokenId));
    if (llm_file.has(key::eosIds)) {
      for (int64_t id : llm_file.get_ints(key::eosIds)) eos_ids_.push_back(static_cast<int32_t>(id));
    } else {
      eos_ids_.push_back(static_cast<int32_t>(llm_file.get_uint(key::tokEos)));
    }
    if (llm_file.has(key::chatTemplate)) chat_template_ = llm_file.get_string(key::chatTemplate);
    validate_metadata(vision_path, llm_path);
  } catch (...) {
    llm_.reset();
    vision_.reset();
    ggml_gallocr_free(alloc_);
    ggml_backend_free(backend_);
    if (cpu_ != nullptr) ggml_backend_free(cpu_);
    if (threadpool_ != nullptr) ggml_threadpool_free(threadpool_);
    throw;
  }
}

void VideoLlama3::validate_metadata(const std::string& vision_path, const std::string& llm_path) const {
  // Every value a request computes with is checked here, so a bad file fails at load time naming
  // its key, instead of failing later in a way that blames the caller's input.
  const PreprocessConfig& p = pre_;
  constexpr int64_t kMaxPixels = int64_t{1} << 31;
  const bool pixels_ok = p.image_min_pixels >= 1 && p.image_min_pixels <= p.image_max_pixels && p.image_max_pixels <= kMaxPixels &&
                         p.video_min_pixels >= 1 && p.video_min_pixels <= p.video_max_pixels && p.video_max_pixels <= kMaxPixels;
  check(pixels_ok, ErrorCode::InvalidModel,
        format("%s: pixel budgets must satisfy 1 <= min <= max <= 2^31 (%s %lld, %s %lld, %s %lld, %s %lld)",
               vision_path.c_str(), key::imageMinPixels, static_cast<long long>(p.image_min_pixels), key::imageMaxPixels,
               static_cast<long long>(p.image_max_pixels), key::videoMinPixels, static_cast<long long>(p.video_min_pixels),
               key::videoMaxPixels, static_cast<long long>(p.video_max_pixels)));
  check((p.image_merge == 1 || p.image_merge == 2) && (p.video_merge == 1 || p.video_merge == 2), ErrorCode::InvalidModel,
        format("%s: %s and %s must be 1 or 2", vision_path.c_str(), key::imageMergeSize, key::videoMergeSize));
  check(std::isfinite(p.fps) && p.fps > 0 && p.fps <= 1000 && p.min_frames >= 1 && p.min_frames <= p.max_frames &&
            p.max_frames <= 10000 && std::isfinite(p.prune_threshold) && p.prune_threshold >= 0,
        ErrorCode::InvalidModel,
        format("%s: video sampling must have 0 < %s <= 1000, 1 <= %s <= %s <= 10000 and %s >= 0", vision_path.c_str(),
               key::videoFps, key::videoMinFrames, key::videoMaxFrames, key::videoPruneThreshold));
  const int64_t vocab = llm_->hparams().n_vocab;
  auto in_vocab = [vocab](int64_t id) { return id >= 0 && id < vocab; };
  check(in_vocab(image_token_id_) && in_vocab(video_token_id_), ErrorCode::InvalidModel,
        format("%s: %s and %s must be token ids below the vocabulary size %lld", vision_path.c_str(), key::imageTokenId,
               key::videoTokenId, static_cast<long long>(vocab)));
  check(!eos_ids_.empty() && std::all_of(eos_ids_.begin(), eos_ids_.end(), in_vocab), ErrorCode::InvalidModel,
        format("%s: end-of-sequence ids must be token ids below the vocabulary size %lld", llm_path.c_str(),
               static_cast<long long>(vocab)));
  // At least 16 positions: the smallest contextSize loadModel() accepts (lib/model.ts).
  check(llm_->hparams().n_ctx_train >= 16 && llm_->hparams().n_ctx_train <= (int64_t{1} << 24), ErrorCode::InvalidModel,
        format("%s: %s must be between 16 and 2^24", llm_path.c_str(), key::contextLength));
}

VideoLlama3::~VideoLlama3() {
  llm_.reset();
  vision_.reset();
  if (alloc_ != nullptr) ggml_gallocr_free(alloc_);
  if (backend_ != nullptr) ggml_backend_free(backend_);
  if (cpu_ != nullptr) ggml_backend_free(cpu_);
  if (threadpool_ != nullptr) ggml_threadpool_free(threadpool_);
}

Session::Session(std::shared_ptr<const VideoLlama3> model, int64_t context_size)
    : model_(std::move(model)),
      cache_(model_->llm().new_cache(context_size)),
      forwards_(std::make_unique<BackgroundThread>()) {}

void Session::settle() {
  if (!pending_.valid()) return;
  try {
    pending_.get();
  } catch (...) {
    // The pass failed (or was aborted) before it wrote the cache: the session stays as it was
    // before that token, and can sample again.
    history_.pop_back();
    position_.store(cache_->size());
    throw;
  }
}

std::vector<float> Session::evaluate(const std::vector<PromptSegment>& segments, bool all_logits) {
  settle();
  abort_.store(false);
  const int64_t dim = model_->llm().hparams().dim;
  int64_t total = 0;
  for (const auto& s : segments) total += s.rows > 0 ? s.rows : static_cast<int64_t>(s.ids.size());
  check(cache_->size() + total <= cache_->capacity(), ErrorCode::InvalidArgument,
        format("The prompt needs %lld tokens but the context holds %lld; raise contextSize or shorten the prompt",
               static_cast<long long>(cache_->size() + total), static_cast<long long>(cache_->capacity())));
  std::vector<float> all;
  std::lock_guard<std::mutex> lock(model_->compute_mutex());
  for (const auto& s : segments) {
    DecoderInput in;
    if (s.rows > 0) {
      check(s.embeddings.size() == static_cast<size_t>(s.rows * dim), ErrorCode::InvalidArgument,
            "vision embeddings do not match the language model's width");
      in.embd = s.embeddings.data();
      in.n = s.rows;
      history_.insert(history_.end(), static_cast<size_t>(s.rows), model_->image_token_id());
    } else {
      if (s.ids.empty()) continue;
      in.ids = s.ids.data();
      in.n = static_cast<int64_t>(s.ids.size());
      history_.insert(history_.end(), s.ids.begin(), s.ids.end());
    }
    std::vector<float> out = model_->llm().forward(*cache_, in, all_logits, model_->compute_alloc(), model_->threads(), &abort_);
    position_.store(cache_->size());
    if (all_logits) all.insert(all.end(), out.begin(), out.end());
    const size_t v = static_cast<size_t>(model_->llm().hparams().n_vocab);
    logits_.assign(out.end() - static_cast<std::ptrdiff_t>(v), out.end());
  }
  return all;
}

StepResult Session::step(const SamplingParams& params, int top_logprobs, const std::vector<int32_t>& stop_ids,
                         const std::vector<uint32_t>& mask) {
  settle();
  abort_.store(false);
  check(!logits_.empty(), ErrorCode::InvalidArgument, "Nothing to sample from: evaluate a prompt first");
  if (!sampler_ || sampler_seed_ != params.seed) {
    sampler_ = std::make_unique<Sampler>(params);
    sampler_seed_ = params.seed;
  }
  sampler_->set_params(params);
  StepResult r;
  std::vector<float> logits = logits_;
  const size_t words = (logits.size() + 31) / 32;
  check(mask.empty() || mask.size() == words, ErrorCode::InvalidArgument,
        format("A token mask must have %zu words (vocabulary %zu) but has %zu", words, logits.size(), mask.size()));
  r.id = sampler_->sample(logits, history_, top_logprobs, &r.top, mask.empty() ? nullptr : &mask);
  const bool stop = std::find(stop_ids.begin(), stop_ids.end(), r.id) != stop_ids.end();
  if (!stop && cache_->size() < cache_->capacity()) {
    history_.push_back(r.id);
    position_.store(cache_->size() + 1);
    // Test hook: each background pass first sleeps this long (not abortably, like a long node),
    // so a test can see that a process's or worker's teardown waits for a pending pass.
    const char* hook = std::getenv("VL3_TEST_FORWARD_SLEEP_MS");
    const int sleep_ms = hook != nullptr ? std::atoi(hook) : 0;
    // The job holds the session until its pass ends: dropping the last other reference meanwhile
    // (dispose, garbage collection) frees the session on that thread afterwards.
    pending_ = forwards_->post([self = shared_from_this(), id = r.id, sleep_ms]() mutable {
      std::shared_ptr<Session> s = std::move(self);
      if (sleep_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms));
      s->forward_token(id);
    });
  }
  return r;
}

void Session::shutdown() {
  abort();
  forwards_->join();
}

void Session::forward_token(int32_t id) {
  std::lock_guard<std::mutex> lock(model_->compute_mutex());
  DecoderInput in;
  in.ids = &id;
  in.n = 1;
  logits_ = model_->llm().forward(*cache_, in, false, model_->compute_alloc(), model_->threads(), &abort_);
}

}  // namespace vl3
