// The VideoLLaMA 3 projector (`mlp2x_gelu`): Linear(Dv -> H) -> GELU(erf) -> Linear(H -> H).
#pragma once

#include "ggml.h"
#include "model/weights.h"

namespace vl3 {

class Projector {
 public:
  /** Binds mm.0.* / mm.2.* of vision.gguf: Dv = vision width, H = LLM width. */
  Projector(const Weights& w, int64_t vision_dim, int64_t llm_dim);

  /** x [Dv, n] -> [H, n]. */
  ggml_tensor* build(ggml_context* ctx, ggml_tensor* x) const;

  int64_t output_dim() const { return llm_dim_; }

 private:
  int64_t llm_dim_;
  ggml_tensor *w0_, *b0_, *w2_, *b2_;
};

}  // namespace vl3
