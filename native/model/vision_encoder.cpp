#include "model/vision_encoder.h"

#include <cmath>

#include "common/status.h"
#include "ggml-alloc.h"
#include "ggml-cpu.h"
#include "model/gguf_names.h"
#include "model/compute.h"
#include "model/layers.h"

namespace vl3 {
namespace {

namespace key = names::key;

/**
 * Segments longer than this use flash attention (memory O(N) instead of O(N²), and faster at 1024
 * patches), unless the weights are f32: those keep exact f32 attention for parity.
 */
constexpr int64_t kDenseAttentionMax = 512;

}  // namespace

VisionEncoder::VisionEncoder(GgufFile& file, ggml_backend_t backend) : backend_(backend) {
  check(file.has(key::architecture) && file.get_string(key::architecture) == "videollama3-vision",
        ErrorCode::InvalidModel, format("%s is not a VideoLLaMA 3 vision file (general.architecture)", file.path().c_str()));
  hp_.dim = static_cast<int64_t>(file.get_uint(key::visionEmbeddingLength));
  hp_.ffn_dim = static_cast<int64_t>(file.get_uint(key::visionFeedForwardLength));
  hp_.n_layers = static_cast<int64_t>(file.get_uint(key::visionBlockCount));
  hp_.n_heads = static_cast<int64_t>(file.get_uint(key::visionHeadCount));
  hp_.patch = static_cast<int64_t>(file.get_uint(key::visionPatchSize));
  hp_.channels = static_cast<int64_t>(file.get_uint(key::visionChannels));
  hp_.eps = static_cast<float>(file.get_float(key::visionLayerNormEps));
  hp_.rope_theta = static_cast<float>(file.get_float(key::visionRopeTheta));
  const int64_t llm_dim = static_cast<int64_t>(file.get_uint(key::projectorOutput));
  check(hp_.dim > 0 && hp_.n_heads > 0 && hp_.dim % hp_.n_heads == 0 && hp_.head_dim() % 4 == 0 &&
            hp_.n_layers > 0 && hp_.n_layers <= 256 && hp_.patch > 0 && hp_.patch <= 64 && hp_.channels == 3 &&
            hp_.ffn_dim > 0 && llm_dim > 0,
        ErrorCode::InvalidModel, format("%s: inconsistent vision hyper-parameters", file.path().c_str()));
  check(std::isfinite(hp_.eps) && hp_.eps >= 0.0f && std::isfinite(hp_.rope_theta) && hp_.rope_theta > 0.0f,
        ErrorCode::InvalidModel,
        format("%s: %s must be a finite number >= 0 and %s a finite number > 0 (found %g and %g)", file.path().c_str(),
               key::visionLayerNormEps, key::visionRopeTheta, static_cast<double>(hp_.eps),
               static_cast<double>(hp_.rope_theta)));

  weights_ = std::make_unique<Weights>(file, backend);
  const Weights& w = *weights_;
  const int64_t D = hp_.dim, F = hp_.ffn_dim;
  patch_w_ = w.get("v.patch_embd.weight", {hp_.patch_values(), D});
  patch_b_ = w.get("v.patch_embd.bias", {D}, true);
  post_w_ = w.get("v.post_ln.weight", {D}, true);
  post_b_ = w.get("v.post_ln.bias", {D}, true);
  for (int64_t i = 0; i < hp_.n_layers; ++i) {
    auto n = [i](const char* suffix) { return "v.blk." + std::to_string(i) + "." + suffix; };
    Layer L{};
    L.ln1_w = w.get(n("ln1.weight"), {D}, true);
    L.ln1_b = w.get(n("ln1.bias"), {D}, true);
    L.q_w = w.get(n("attn_q.weight"), {D, D});
    L.q_b = w.get(n("attn_q.bias"), {D}, true);
    L.k_w = w.get(n("attn_k.weight"), {D, D});
    L.k_b = w.get(n("attn_k.bias"), {D}, true);
    L.v_w = w.get(n("attn_v.weight"), {D, D});
    L.v_b = w.get(n("attn_v.bias"), {D}, true);
    L.o_w = w.get(n("attn_out.weight"), {D, D});
    L.o_b = w.get(n("attn_out.bias"), {D}, true);
    L.ln2_w = w.get(n("ln2.weight"), {D}, true);
    L.ln2_b = w.get(n("ln2.bias"), {D}, true);
    L.up_w = w.get(n("ffn_up.weight"), {D, F});
    L.up_b = w.get(n("ffn_up.bias"), {F}, true);
    L.down_w = w.get(n("ffn_down.weight"), {F, D});
    L.down_b = w.get(n("ffn_down.bias"), {D}, true);
    layers_.push_back(L);
  }
  projector_ = std::make_unique<Projector>(w, D, llm_dim);
  exact_attention_ = layers_.front().q_w->type == GGML_TYPE_F32;
}

std::vector<float> VisionEncoder::encode(const VisionSegment& seg, int threads, const StageSink* sink,
                                         const std::atomic<bool>* abort_flag) const {
  const int64_t m = seg.merge, gh = seg.grid_h, gw = seg.grid_w;
  check(m == 1 || m == 2, ErrorCode::InvalidArgument, "merge size must be 1 or 2");
  check(gh > 0 && gw > 0 && gh % m == 0 && gw % m == 0 && gh * gw <= (1 << 20), ErrorCode::InvalidArgument,
        format("invalid patch grid %lldx%lld for merge %lld", static_cast<long long>(gh), static_cast<long long>(gw),
               static_cast<long long>(m)));
  const int64_t N = gh * gw, T = N / (m * m), D = hp_.dim, H = projector_->output_dim();
  const int64_t hd = hp_.head_dim(), nh = hp_.n_heads, P = hp_.patch_values();

  // Generous: ~55 tensors per layer today; running out would be a ggml assertion, not an error.
  const size_t n_nodes = 256 + 128 * static_cast<size_t>(hp_.n_layers);
  GraphContext ctx_owner = new_graph_context(n_nodes);
  ggml_context* ctx = ctx_owner.get();
  ggml_cgraph* gf = ggml_new_graph_custom(ctx, n_nodes, false);
  std::vector<std::pair<std::string, ggml_tensor*>> stages;
  auto stage = [&](const std::string& name, ggml_tensor* t) {
    if (sink == nullptr) return;
    ggml_set_output(t);
    ggml_build_forward_expand(gf, t);
    stages.emplace_back(name, t);
  };

  ggml_tensor* pix = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, P, N);  // [588, N]
  ggml_set_input(pix);
  ggml_tensor* cos = ggml_new_tensor_3d(ctx, GGML_TYPE_F32, hd, 1, N);
  ggml_tensor* sin = ggml_new_tensor_3d(ctx, GGML_TYPE_F32, hd, 1, N);
  ggml_set_input(cos);
  ggml_set_input(sin);

  ggml_tensor* x = layers::linear(ctx, pix, patch_w_, patch_b_);  // [D, N]
  stage("patch_embeds", x);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  for (size_t il = 0; il < layers_.size(); ++il) {
    const Layer& L = layers_[il];
    ggml_tensor* h = layers::layer_norm(ctx, x, L.ln1_w, L.ln1_b, hp_.eps);
    ggml_tensor* q = ggml_reshape_3d(ctx, layers::linear(ctx, h, L.q_w, L.q_b), hd, nh, N);  // [hd, nh, N]
    ggml_tensor* k = ggml_reshape_3d(ctx, layers::linear(ctx, h, L.k_w, L.k_b), hd, nh, N);
    ggml_tensor* v = ggml_reshape_3d(ctx, layers::linear(ctx, h, L.v_w, L.v_b), hd, nh, N);
    q = layers::rotary(ctx, q, cos, sin);
    k = layers::rotary(ctx, k, cos, sin);
    ggml_tensor* attn;
    if (N <= kDenseAttentionMax || exact_attention_) {
      // Contiguous operands: ggml's blocked f32 GEMM instead of per-element dot products.
      q = ggml_cont(ctx, ggml_permute(ctx, q, 0, 2, 1, 3));      // [hd, N, nh]
      k = ggml_cont(ctx, ggml_permute(ctx, k, 0, 2, 1, 3));      // [hd, N, nh]
      ggml_tensor* v_t = ggml_cont(ctx, ggml_permute(ctx, v, 1, 2, 0, 3));  // [N, hd, nh]
      attn = layers::attention(ctx, q, k, v_t, nullptr, scale);   // [hd, nh, N]
    } else if (ggml_backend_is_cpu(backend_)) {
      // ggml's CPU flash attention on f32 K/V, on its tiled path (layers::cpu_flash_tiled), which is
      // f32 inside: heads zero-padded to a multiple of its SIMD width (the 72-wide heads of SigLIP
      // to 80 under AVX-512; zeros add nothing to q·k, and the padded output columns are dropped).
      // Its other path, on f16 K/V, sums softmax·V in f16 (relative error 1e-2 at 1024 patches, and
      // 8x slower). f16 K/V on the tiled path cost 4e-4 and ran as fast as these contiguous f32
      // copies (strided f32 views of k and v ran 25 % slower at 4096 patches).
      const int64_t simd = layers::cpu_flash_simd_floats(), pad = (simd - hd % simd) % simd;
      auto by_head = [&](ggml_tensor* t) {  // [hd, nh, N] -> contiguous [hd + pad, N, nh]
        t = ggml_permute(ctx, t, 0, 2, 1, 3);
        return pad > 0 ? ggml_pad(ctx, t, static_cast<int>(pad), 0, 0, 0) : ggml_cont(ctx, t);
      };
      attn = ggml_flash_attn_ext(ctx, pad > 0 ? by_head(q) : ggml_permute(ctx, q, 0, 2, 1, 3), by_head(k), by_head(v),
                                 nullptr, scale, 0.0f, 0.0f);                       // [hd + pad, nh, N]
      ggml_flash_attn_ext_set_prec(attn, GGML_PREC_F32);
      if (pad > 0) attn = ggml_cont(ctx, ggml_view_3d(ctx, attn, hd, nh, N, attn->nb[1], attn->nb[2], 0));  // [hd, nh, N]
    } else {  // GPU: f16 K/V, as its flash attention kernels take them
      q = ggml_permute(ctx, q, 0, 2, 1, 3);                                        // [hd, N, nh]
      k = ggml_cast(ctx, ggml_permute(ctx, k, 0, 2, 1, 3), GGML_TYPE_F16);         // [hd, N, nh]
      v = ggml_cast(ctx, ggml_permute(ctx, v, 0, 2, 1, 3), GGML_TYPE_F16);         // [hd, N, nh]
      attn = ggml_flash_attn_ext(ctx, q, k, v, nullptr, scale, 0.0f, 0.0f);       // [hd, nh, N]
      ggml_flash_attn_ext_set_prec(attn, GGML_PREC_F32);
    }
    attn = ggml_reshape_2d(ctx, attn, D, N);                                        // [D, N]
    x = layers::linear(ctx, attn, L.o_w, L.o_b, x);
    h = layers::layer_norm(ctx, x, L.ln2_w, L.ln2_b, hp_.eps);
    h = layers::gelu_tanh(ctx, layers::linear(ctx, h, L.up_w, L.up_b));             // [F, N]
    x = layers::linear(ctx, h, L.down_w, L.down_b, x);                              // [D, N]
    stage("encoder_layer_" + std::to_string(il), x);
  }
  x = layers::layer_norm(ctx, x, post_w_, post_b_, hp_.eps);
  stage("post_layernorm", x);
  if (m == 2) {
    // Rows are in merge-block order, so each merged token is 4 consecutive rows; the bilinear
    // (align_corners=False) 2x downsample of the reference is exactly their mean.
    ggml_tensor* blocks = ggml_reshape_3d(ctx, x, D, 4, T);                          // [D, 4, T]
    blocks = ggml_cont(ctx, ggml_permute(ctx, blocks, 1, 0, 2, 3));                 // [4, D, T]
    x = ggml_reshape_2d(ctx, ggml_mean(ctx, blocks), D, T);                         // [D, T]
  }
  stage("merged", x);
  ggml_tensor* out = projector_->build(ctx, x);                                     // [H, T]
  stage("projector", out);
  ggml_set_output(out);
  ggml_build_forward_expand(gf, out);

  // A fresh allocator per segment: graphs differ from call to call (stage outputs, sizes), and a
  // reused ggml_gallocr crashed on such a sequence. Allocation is small next to the encode.
  std::unique_ptr<ggml_gallocr, void (*)(ggml_gallocr_t)> own(
      ggml_gallocr_new(ggml_backend_get_default_buffer_type(backend_)), ggml_gallocr_free);
  check(own != nullptr && ggml_gallocr_alloc_graph(own.get(), gf), ErrorCode::OutOfMemory,
        format("Cannot allocate %lld vision tokens' working memory", static_cast<long long>(N)));

  // Inputs: pixels and the 2-D RoPE tables for unmerged patch positions in merge-block order.
  ggml_backend_tensor_set(pix, seg.pixels, 0, ggml_nbytes(pix));
  const int64_t quarter = hd / 4;  // frequencies per axis
  std::vector<float> inv_freq(static_cast<size_t>(quarter));
  for (int64_t i = 0; i < quarter; ++i) {
    const float expo = static_cast<float>(2 * i) / static_cast<float>(hd / 2);
    inv_freq[static_cast<size_t>(i)] = 1.0f / std::pow(hp_.rope_theta, expo);
  }
  std::vector<float> cos_v(static_cast<size_t>(hd * N)), sin_v(static_cast<size_t>(hd * N));
  int64_t row = 0;
  for (int64_t bi = 0; bi < gh / m; ++bi)
    for (int64_t bj = 0; bj < gw / m; ++bj)
      for (int64_t ii = 0; ii < m; ++ii)
        for (int64_t jj = 0; jj < m; ++jj, ++row) {
          const float ph = static_cast<float>(bi * m + ii), pw = static_cast<float>(bj * m + jj);
          float* c = &cos_v[static_cast<size_t>(row * hd)];
          float* s = &sin_v[static_cast<size_t>(row * hd)];
          for (int64_t i = 0; i < quarter; ++i) {
            const float ah = ph * inv_freq[static_cast<size_t>(i)], aw = pw * inv_freq[static_cast<size_t>(i)];
            // layout [row freqs, col freqs] duplicated: [a, a], a = [h·f (hd/4), w·f (hd/4)]
            for (int64_t rep = 0; rep < 2; ++rep) {
              const int64_t o = rep * (hd / 2);
              c[o + i] = std::cos(ah);
              s[o + i] = std::sin(ah);
              c[o + quarter + i] = std::cos(aw);
              s[o + quarter + i] = std::sin(aw);
            }
          }
        }
  ggml_backend_tensor_set(cos, cos_v.data(), 0, ggml_nbytes(cos));
  ggml_backend_tensor_set(sin, sin_v.data(), 0, ggml_nbytes(sin));

  compute_graph(backend_, gf, threads, abort_flag, "Vision encoding");

  if (sink != nullptr) {
    for (const auto& [name, t] : stages) {
      std::vector<float> buf(static_cast<size_t>(ggml_nelements(t)));
      ggml_backend_tensor_get(t, buf.data(), 0, ggml_nbytes(t));
      (*sink)(name, buf.data(), t->ne[1], t->ne[0]);
    }
  }
  std::vector<float> result(static_cast<size_t>(H * T));
  ggml_backend_tensor_get(out, result.data(), 0, ggml_nbytes(out));
  return result;
}

}  // namespace vl3
