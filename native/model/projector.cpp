#include "model/projector.h"

#include "model/layers.h"

namespace vl3 {

Projector::Projector(const Weights& w, int64_t vision_dim, int64_t llm_dim)
    : llm_dim_(llm_dim),
      w0_(w.get("mm.0.weight", {vision_dim, llm_dim})),
      b0_(w.get("mm.0.bias", {llm_dim}, true)),
      w2_(w.get("mm.2.weight", {llm_dim, llm_dim})),
      b2_(w.get("mm.2.bias", {llm_dim}, true)) {}

ggml_tensor* Projector::build(ggml_context* ctx, ggml_tensor* x) const {
  ggml_tensor* h = layers::linear(ctx, x, w0_, b0_);  // [H, n]
  h = ggml_gelu_erf(ctx, h);                          // exact erf GELU (nn.GELU())
  return layers::linear(ctx, h, w2_, b2_);            // [H, n]
}

}  // namespace vl3
