// VideoLLaMA 3 (HF `VideoLlama3ForConditionalGeneration`): the vision encoder + projector, the
// Qwen2 decoder and the tokenizer of one converted model folder, on one ggml backend; and the
// generation session (KV cache, sampler) that prompts run in.
#pragma once

#include <atomic>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/background.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "model/qwen2.h"
#include "model/sampler.h"
#include "model/tokenizer.h"
#include "model/vision_encoder.h"

namespace vl3 {

/** Preprocessing constants stored in vision.gguf (spec §5–6). */
struct PreprocessConfig {
  float mean[3] = {0.5f, 0.5f, 0.5f};
  float std[3] = {0.5f, 0.5f, 0.5f};
  int64_t image_min_pixels = 0, image_max_pixels = 0, image_merge = 1;
  int64_t video_min_pixels = 0, video_max_pixels = 0, video_merge = 2;
  float fps = 1.0f;
  int64_t min_frames = 4, max_frames = 180;
  float prune_threshold = 0.1f;
  bool use_token_compression = true;
};

/** Where a model runs: `Auto` takes the first GPU ggml registered (a CUDA build with a driver and device), else the CPU. */
enum class Device { Auto, Cpu, Cuda };

class VideoLlama3 {
 public:
  /**
   * Loads `llm.gguf` and `vision.gguf` onto `device`. On a GPU, `gpu_layers` >= 0 keeps all but
   * the last `gpu_layers` decoder layers on the CPU (Qwen2Model); < 0 puts them all on the GPU.
   * Throws vl3::Error naming the file at fault, or DEVICE_UNAVAILABLE when `Cuda` is asked for
   * and no GPU device exists.
   */
  VideoLlama3(const std::string& llm_path, const std::string& vision_path, int threads, Device device = Device::Cpu,
              int64_t gpu_layers = -1);
  ~VideoLlama3();
  VideoLlama3(const VideoLlama3&) = delete;
  VideoLlama3& operator=(const VideoLlama3&) = delete;

  const Qwen2Model& llm() const { return *llm_; }
  const VisionEncoder& vision() const { return *vision_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const PreprocessConfig& preprocess() const { return pre_; }
  int32_t image_token_id() const { return image_token_id_; }
  int32_t video_token_id() const { return video_token_id_; }
  const std::vector<int32_t>& eos_ids() const { return eos_ids_; }
  const std::string& chat_template() const { return chat_template_; }
  int threads() const { return threads_; }
  /** Bytes of weights held in memory. */
  size_t weight_bytes() const { return weight_bytes_; }
  /** The backend runs one graph at a time; every compute takes this lock. */
  std::mutex& compute_mutex() const { return compute_mutex_; }
  ggml_backend_t backend() const { return backend_; }
  /** ggml device name the model runs on (`CPU`, `CUDA0`, ...). */
  const std::string& device_name() const { return device_name_; }
  /** Why `Auto` chose the CPU (empty when a GPU was used or the CPU was asked for). */
  const std::string& device_note() const { return device_note_; }
  /** Compute memory for graphs, reused across calls; use only under compute_mutex(). */
  ggml_gallocr_t compute_alloc() const { return alloc_; }

 private:
  /** Throws INVALID_MODEL, naming the key, for preprocessing constants or token ids no request could use. */
  void validate_metadata(const std::string& vision_path, const std::string& llm_path) const;

  ggml_backend_t backend_ = nullptr;
  ggml_backend_t cpu_ = nullptr;  // the CPU side of a GPU model with some layers on the CPU
  std::string device_name_ = "CPU";
  std::string device_note_;
  ggml_threadpool* threadpool_ = nullptr;  // persistent CPU workers, reused by every graph
  ggml_gallocr_t alloc_ = nullptr;         // compute buffer, grown to the largest graph seen
  std::unique_ptr<Qwen2Model> llm_;
  std::unique_ptr<VisionEncoder> vision_;
  std::unique_ptr<Tokenizer> tokenizer_;
  PreprocessConfig pre_;
  int32_t image_token_id_ = -1, video_token_id_ = -1;
  std::vector<int32_t> eos_ids_;
  std::string chat_template_;
  int threads_;
  size_t weight_bytes_ = 0;
  mutable std::mutex compute_mutex_;
};

/** One piece of a prompt: token ids, or projected vision embeddings ([rows, llm dim]). */
struct PromptSegment {
  std::vector<int32_t> ids;
  std::vector<float> embeddings;
  int64_t rows = 0;  // embedding rows (0 for a token segment)
};

struct StepResult {
  int32_t id;
  std::vector<TokenLogprob> top;
};

/**
 * A conversation's state: its KV cache, the ids seen so far and the logits to sample next.
 * Create it with std::make_shared: a step's forward pass runs in the background holding a
 * reference, so the caller gets the sampled token while the decoder already evaluates it.
 */
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(std::shared_ptr<const VideoLlama3> model, int64_t context_size);

  int64_t context_size() const { return cache_->capacity(); }
  /** Positions used, counting a token whose forward pass is still running. */
  int64_t position() const { return position_.load(); }
  size_t cache_bytes() const { return cache_->bytes(); }

  /** Evaluates segments in order; with `all_logits`, returns every row's logits (tests). */
  std::vector<float> evaluate(const std::vector<PromptSegment>& segments, bool all_logits);

  /**
   * Samples the next token from the current logits (reporting `top_logprobs` alternatives) and,
   * unless it is in `stop_ids` or the context is full, starts evaluating it in the background.
   * Returns without waiting for that forward pass; the next step() or evaluate() waits for it and
   * throws its error, if any. So the caller's handling of a token overlaps the next forward pass.
   * `mask` (structured output; empty = none): the allowed-token bitmask of this step's sample
   * (see Sampler::sample). It applies to the logits this call samples from, which the previous
   * step's forward pass produced, so a caller computes it after seeing the previous token.
   */
  StepResult step(const SamplingParams& params, int top_logprobs, const std::vector<int32_t>& stop_ids,
                  const std::vector<uint32_t>& mask = {});

  /** Raised from any thread; the running graph stops and the call (or the next one) throws ABORTED. */
  void abort() { abort_.store(true); }

  /**
   * Aborts the background forward pass, if any, and ends its thread, waiting for both: for a
   * process's or worker's teardown, which must not run on under them. The session's later steps
   * fail with ABORTED. Call it from any thread but that one.
   */
  void shutdown();

 private:
  /** Waits for the background forward pass, if any, rethrowing its error. */
  void settle();
  void forward_token(int32_t id);

  std::shared_ptr<const VideoLlama3> model_;
  std::unique_ptr<KvCache> cache_;
  std::vector<int32_t> history_;
  std::vector<float> logits_;
  std::unique_ptr<Sampler> sampler_;
  uint64_t sampler_seed_ = 0;
  std::atomic<bool> abort_{false};
  std::atomic<int64_t> position_{0};
  std::future<void> pending_;                   // the forward pass started by the last step()
  std::unique_ptr<BackgroundThread> forwards_;  // runs those passes
};

}  // namespace vl3
