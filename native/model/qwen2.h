// The Qwen2 / Qwen2.5 decoder of VideoLLaMA 3 (HF `Qwen2Model` + lm_head), read from the
// llama.cpp-compatible `llm.gguf`: GQA attention with q/k/v biases, 1-D RoPE (rotate-half),
// SwiGLU MLP, RMSNorm; tied or untied output matrix. One KV cache per generation session.
#pragma once

#include <atomic>
#include <memory>
#include <vector>

#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "model/gguf_file.h"
#include "model/weights.h"

namespace vl3 {

struct Qwen2Hparams {
  int64_t n_vocab = 0;      // embedding rows
  int64_t dim = 0;          // embedding_length
  int64_t ffn_dim = 0;      // feed_forward_length
  int64_t n_layers = 0;     // block_count
  int64_t n_heads = 0;      // attention.head_count
  int64_t n_kv_heads = 0;   // attention.head_count_kv
  int64_t n_ctx_train = 0;  // context_length
  float rope_theta = 1e6f;
  float eps = 1e-6f;
  int64_t head_dim() const { return dim / n_heads; }
};

/**
 * Keys and values of one sequence for up to `capacity` positions, stored as `type` (f32 or f16),
 * layer i in the memory of `layer_backends[i]` (the backend that runs that layer).
 */
class KvCache {
 public:
  KvCache(const Qwen2Hparams& hp, int64_t capacity, ggml_type type, const std::vector<ggml_backend_t>& layer_backends);
  ~KvCache();
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  int64_t capacity() const { return capacity_; }
  int64_t size() const { return n_past_; }
  /** Forgets positions >= n (n <= size()). */
  void truncate(int64_t n);
  size_t bytes() const;

 private:
  friend class Qwen2Model;
  void release();
  int64_t capacity_;
  int64_t n_past_ = 0;
  std::vector<ggml_context*> ctxs_;             // one per backend
  std::vector<ggml_backend_buffer_t> buffers_;  // one per backend
  std::vector<ggml_tensor*> k_, v_;  // per layer [head_dim, n_kv_heads, capacity]
};

/** One piece of decoder input: token ids, or embedding rows (vision tokens) of width `dim`. */
struct DecoderInput {
  const int32_t* ids = nullptr;    // n ids, or
  const float* embd = nullptr;     // n rows of dim floats
  int64_t n = 0;
};

class Qwen2Model {
 public:
  /**
   * Loads the decoder onto `backend`. With a GPU `backend`, a CPU backend `cpu` and `gpu_layers`
   * below the layer count, only the last `gpu_layers` layers (and the output head, when any layer
   * is on the GPU) go to the GPU; the token embeddings and the first layers stay on the CPU, and a
   * ggml scheduler runs each graph across both (`gpu_layers` < 0: all layers on `backend`).
   */
  Qwen2Model(GgufFile& file, ggml_backend_t backend, ggml_backend_t cpu = nullptr, int64_t gpu_layers = -1);
  ~Qwen2Model();
  Qwen2Model(const Qwen2Model&) = delete;
  Qwen2Model& operator=(const Qwen2Model&) = delete;

  /** Decoder layers on `backend` (all of them unless split). */
  int64_t gpu_layers() const { return offloaded_; }

  const Qwen2Hparams& hparams() const { return hp_; }
  size_t weight_bytes() const { return weights_->bytes(); }
  /**
   * KV-cache element type: f32 when the weights are f32 (exact parity with the reference), f16
   * otherwise (half the memory per position; quantized weights dominate the error anyway).
   */
  ggml_type kv_type() const { return kv_type_; }
  std::unique_ptr<KvCache> new_cache(int64_t capacity) const;

  /**
   * Appends `in` at positions cache.size().. and returns the logits of its last row
   * ([n_vocab]), or of every row ([n, n_vocab] row-major) with `all_logits`. Long inputs are
   * processed in chunks of `batch` rows. `alloc` holds the compute memory (shared by all
   * sessions of a model; callers serialize). Throws INVALID_ARGUMENT when the cache is full or
   * an id is out of range, ABORTED when `abort_flag` is raised.
   */
  std::vector<float> forward(KvCache& cache, const DecoderInput& in, bool all_logits, ggml_gallocr_t alloc, int threads,
                             const std::atomic<bool>* abort_flag, int64_t batch = 512) const;

 private:
  struct Layer {
    ggml_tensor *attn_norm, *wq, *bq, *wk, *bk, *wv, *bv, *wo, *ffn_norm, *w_gate, *w_up, *w_down;
    ggml_tensor *wqkv, *bqkv, *w_gate_up;  // fused at load (non-f32 models), else null
  };
  std::vector<float> forward_chunk(KvCache& cache, const DecoderInput& in, bool all_logits, ggml_gallocr_t alloc,
                                   int threads, const std::atomic<bool>* abort_flag) const;

  Qwen2Hparams hp_;
  ggml_type kv_type_ = GGML_TYPE_F32;
  ggml_backend_t backend_;
  int64_t offloaded_ = 0;                     // layers on backend_
  std::vector<ggml_backend_t> layer_backend_;  // per layer
  ggml_backend_sched_t sched_ = nullptr;      // split models: runs graphs across backend_ and the CPU
  std::unique_ptr<Weights> weights_;
  ggml_tensor *tok_embd_, *output_norm_, *output_;
  std::vector<Layer> layers_;
};

}  // namespace vl3
