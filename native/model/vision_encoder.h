// The SigLIP NaViT vision encoder of VideoLLaMA 3 (HF `VideoLlama3VisionModel`): patch
// embedding, 2-D axial RoPE, pre-LN transformer blocks, post-LayerNorm, then the m×m spatial
// merge. Each image or video frame is its own attention segment (one graph per segment).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ggml-backend.h"
#include "model/gguf_file.h"
#include "model/projector.h"
#include "model/weights.h"

namespace vl3 {

struct VisionHparams {
  int64_t dim = 0;          // embedding_length (1152)
  int64_t ffn_dim = 0;      // feed_forward_length (4304)
  int64_t n_layers = 0;     // block_count (27)
  int64_t n_heads = 0;      // head_count (16)
  int64_t patch = 14;       // patch_size
  int64_t channels = 3;
  float eps = 1e-6f;
  float rope_theta = 10000.f;
  int64_t head_dim() const { return dim / n_heads; }
  int64_t patch_values() const { return channels * patch * patch; }
};

/** Receives named intermediate tensors ([rows, cols] row-major f32) when stage dumps are asked for. */
using StageSink = std::function<void(const std::string& name, const float* data, int64_t rows, int64_t cols)>;

/** One image or frame: pixel rows in merge-block order ([grid_h·grid_w, C·P·P]) and its grid. */
struct VisionSegment {
  const float* pixels;
  int64_t grid_h, grid_w;
  int64_t merge;  // 1 for images, 2 for video frames
};

class VisionEncoder {
 public:
  VisionEncoder(GgufFile& file, ggml_backend_t backend);

  const VisionHparams& hparams() const { return hp_; }
  size_t weight_bytes() const { return weights_->bytes(); }
  const Projector& projector() const { return *projector_; }

  /**
   * Encodes one segment and projects it: returns [grid_h·grid_w / merge², H] row-major.
   * `threads` CPU threads; `sink` (optional) receives patch_embeds, encoder_layer_<i>,
   * post_layernorm, merged and projector. `abort_flag` stops a running graph.
   */
  std::vector<float> encode(const VisionSegment& seg, int threads, const StageSink* sink,
                            const std::atomic<bool>* abort_flag) const;

 private:
  struct Layer {
    ggml_tensor *ln1_w, *ln1_b, *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *o_w, *o_b, *ln2_w, *ln2_b, *up_w, *up_b,
        *down_w, *down_b;
  };
  VisionHparams hp_;
  ggml_backend_t backend_;
  std::unique_ptr<Weights> weights_;
  std::unique_ptr<Projector> projector_;
  ggml_tensor *patch_w_, *patch_b_, *post_w_, *post_b_;
  std::vector<Layer> layers_;
  bool exact_attention_ = false;  // f32 weights: dense f32 attention at every size
};

}  // namespace vl3
