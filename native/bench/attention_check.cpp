#include "bench/attention_check.h"

#include <cmath>
#include <memory>
#include <random>
#include <vector>

#include "common/status.h"
#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "kernels/attention.h"

namespace vl3::bench {
namespace {

/** A CPU backend with `threads` threads, and a buffer holding every tensor of a context. */
struct CpuTensors {
  std::unique_ptr<ggml_backend, void (*)(ggml_backend_t)> backend{ggml_backend_cpu_init(), ggml_backend_free};
  std::unique_ptr<ggml_backend_buffer, void (*)(ggml_backend_buffer_t)> buffer{nullptr, ggml_backend_buffer_free};
  CpuTensors(ggml_context* ctx, int threads) {
    check(backend != nullptr, ErrorCode::Internal, "ggml CPU backend failed to start");
    ggml_backend_cpu_set_n_threads(backend.get(), threads);
    buffer.reset(ggml_backend_alloc_ctx_tensors(ctx, backend.get()));
    check(buffer != nullptr, ErrorCode::OutOfMemory, "Cannot allocate check tensors");
  }
};

}  // namespace

AttentionCheck check_attention(int n, int heads, int kv_heads, int head_dim, int positions, int threads) {
  check(n >= 1 && n <= positions && positions <= 65536 && heads >= 1 && heads <= 256 && kv_heads >= 1 &&
            heads % kv_heads == 0 && threads >= 1 && threads <= 512,
        ErrorCode::InvalidArgument, "Expected 1 <= n <= positions <= 65536, kv_heads dividing heads, threads 1..512");
  check(kernels::attention_f16_enabled(head_dim), ErrorCode::InvalidArgument,
        "our attention needs an AVX2/FMA/F16C CPU, head_dim a multiple of 8 and VL3_CPU_KERNELS unset");
  const int64_t hd = head_dim, nh = heads, nkv = kv_heads, L = positions;
  ggml_init_params ip{ggml_tensor_overhead() * 16 + ggml_graph_overhead(), nullptr, true};
  std::unique_ptr<ggml_context, void (*)(ggml_context*)> ctx(ggml_init(ip), ggml_free);
  ggml_tensor* q = ggml_new_tensor_3d(ctx.get(), GGML_TYPE_F32, hd, nh, n);     // [hd, nh, n]
  ggml_tensor* k = ggml_new_tensor_3d(ctx.get(), GGML_TYPE_F16, hd, nkv, L);    // [hd, nkv, L], the cache's layout
  ggml_tensor* v = ggml_new_tensor_3d(ctx.get(), GGML_TYPE_F16, hd, nkv, L);
  ggml_tensor* mask = n > 1 ? ggml_new_tensor_2d(ctx.get(), GGML_TYPE_F16, L, n) : nullptr;  // [L, n] causal
  ggml_tensor* ours = kernels::attention_f16(ctx.get(), q, k, v);             // [hd, nh, n]
  ggml_tensor* theirs = ggml_flash_attn_ext(ctx.get(), ggml_permute(ctx.get(), q, 0, 2, 1, 3), ggml_permute(ctx.get(), k, 0, 2, 1, 3),
                                            ggml_permute(ctx.get(), v, 0, 2, 1, 3), mask,
                                            1.0f / std::sqrt(static_cast<float>(hd)), 0.0f, 0.0f);  // [hd, nh, n]
  ggml_flash_attn_ext_set_prec(theirs, GGML_PREC_F32);
  ggml_cgraph* gf = ggml_new_graph(ctx.get());
  ggml_build_forward_expand(gf, ours);
  ggml_build_forward_expand(gf, theirs);
  const CpuTensors cpu(ctx.get(), threads);

  std::mt19937 gen(7);
  std::normal_distribution<float> dist(0.f, 1.0f);
  std::vector<float> qf(static_cast<size_t>(ggml_nelements(q)));
  for (auto& x : qf) x = 2 * dist(gen);  // scores spread over a few units: a peaked softmax
  std::vector<uint16_t> kh(static_cast<size_t>(ggml_nelements(k))), vh(kh.size());
  for (auto& x : kh) x = ggml_fp32_to_fp16(dist(gen));
  for (auto& x : vh) x = ggml_fp32_to_fp16(dist(gen));
  ggml_backend_tensor_set(q, qf.data(), 0, ggml_nbytes(q));
  ggml_backend_tensor_set(k, kh.data(), 0, ggml_nbytes(k));
  ggml_backend_tensor_set(v, vh.data(), 0, ggml_nbytes(v));
  if (mask != nullptr) {
    std::vector<uint16_t> m(static_cast<size_t>(L * n));
    for (int64_t t = 0; t < n; ++t)
      for (int64_t j = 0; j < L; ++j) m[static_cast<size_t>(t * L + j)] = ggml_fp32_to_fp16(j <= L - n + t ? 0.0f : -INFINITY);
    ggml_backend_tensor_set(mask, m.data(), 0, ggml_nbytes(mask));
  }
  check(ggml_backend_graph_compute(cpu.backend.get(), gf) == GGML_STATUS_SUCCESS, ErrorCode::Internal, "graph compute failed");
  AttentionCheck r{std::vector<float>(qf.size()), std::vector<float>(qf.size()), std::vector<float>(qf.size())};
  ggml_backend_tensor_get(theirs, r.ggml.data(), 0, ggml_nbytes(theirs));
  ggml_backend_tensor_get(ours, r.ours.data(), 0, ggml_nbytes(ours));
  kernels::attention_f16_reference(qf.data(), kh.data(), vh.data(), r.reference.data(), hd, nh, nkv, n, L);
  return r;
}

AttentionAppendCheck check_attention_append(int heads, int kv_heads, int head_dim, int positions, int threads) {
  check(positions >= 1 && positions <= 65536 && heads >= 1 && heads <= 256 && kv_heads >= 1 && heads % kv_heads == 0 &&
            threads >= 1 && threads <= 512,
        ErrorCode::InvalidArgument, "Expected 1 <= positions <= 65536, kv_heads dividing heads, threads 1..512");
  check(kernels::attention_f16_enabled(head_dim), ErrorCode::InvalidArgument,
        "our attention needs an AVX2/FMA/F16C CPU, head_dim a multiple of 8 and VL3_CPU_KERNELS unset");
  const int64_t hd = head_dim, nh = heads, nkv = kv_heads, L = positions, p = L - 1;
  const float theta = 10000.0f;
  ggml_init_params ip{ggml_tensor_overhead() * 32 + ggml_graph_overhead(), nullptr, true};
  std::unique_ptr<ggml_context, void (*)(ggml_context*)> ctx(ggml_init(ip), ggml_free);
  ggml_context* c = ctx.get();
  ggml_tensor* qkv = ggml_new_tensor_2d(c, GGML_TYPE_F32, (nh + 2 * nkv) * hd, 1);  // one fused q/k/v row, as decode has
  const size_t es = sizeof(float);
  ggml_tensor* q = ggml_view_3d(c, qkv, hd, nh, 1, hd * es, qkv->nb[1], 0);                // [hd, nh, 1]
  ggml_tensor* k_new = ggml_view_3d(c, qkv, hd, nkv, 1, hd * es, qkv->nb[1], nh * hd * es);  // [hd, nkv, 1]
  ggml_tensor* v_new = ggml_view_3d(c, qkv, hd, nkv, 1, hd * es, qkv->nb[1], (nh + nkv) * hd * es);
  ggml_tensor* cos = ggml_new_tensor_1d(c, GGML_TYPE_F32, hd);
  ggml_tensor* sin = ggml_new_tensor_1d(c, GGML_TYPE_F32, hd);
  ggml_tensor* pos = ggml_new_tensor_1d(c, GGML_TYPE_I32, 1);
  ggml_tensor* kc = ggml_new_tensor_3d(c, GGML_TYPE_F16, hd, nkv, L);  // [hd, nkv, L] ours
  ggml_tensor* vc = ggml_new_tensor_3d(c, GGML_TYPE_F16, hd, nkv, L);
  ggml_tensor* kg = ggml_new_tensor_3d(c, GGML_TYPE_F16, hd, nkv, L);  // ggml's
  ggml_tensor* vg = ggml_new_tensor_3d(c, GGML_TYPE_F16, hd, nkv, L);
  ggml_tensor* ours = kernels::attention_f16_append(c, q, k_new, v_new, kc, vc, cos, sin);  // [hd, nh, 1]
  const auto rope = [&](ggml_tensor* t) {
    return ggml_rope_ext(c, t, pos, nullptr, static_cast<int>(hd), GGML_ROPE_TYPE_NEOX, 0, theta, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f);
  };
  ggml_cgraph* gf = ggml_new_graph(c);
  ggml_build_forward_expand(gf, ours);
  ggml_build_forward_expand(gf, ggml_cpy(c, rope(k_new), ggml_view_3d(c, kg, hd, nkv, 1, kg->nb[1], kg->nb[2], p * kg->nb[2])));
  ggml_build_forward_expand(gf, ggml_cpy(c, v_new, ggml_view_3d(c, vg, hd, nkv, 1, vg->nb[1], vg->nb[2], p * vg->nb[2])));
  ggml_tensor* theirs = ggml_flash_attn_ext(c, ggml_permute(c, rope(q), 0, 2, 1, 3), ggml_permute(c, kg, 0, 2, 1, 3),
                                            ggml_permute(c, vg, 0, 2, 1, 3), nullptr,
                                            1.0f / std::sqrt(static_cast<float>(hd)), 0.0f, 0.0f);  // [hd, nh, 1]
  ggml_flash_attn_ext_set_prec(theirs, GGML_PREC_F32);
  ggml_build_forward_expand(gf, theirs);
  const CpuTensors cpu(c, threads);

  std::mt19937 gen(11);
  std::normal_distribution<float> dist(0.f, 1.0f);
  std::vector<float> x(static_cast<size_t>(ggml_nelements(qkv)));
  for (auto& e : x) e = 2 * dist(gen);
  std::vector<uint16_t> kh(static_cast<size_t>(ggml_nelements(kc))), vh(kh.size());
  for (auto& e : kh) e = ggml_fp32_to_fp16(dist(gen));  // position p too: it must be overwritten
  for (auto& e : vh) e = ggml_fp32_to_fp16(dist(gen));
  std::vector<float> cs(static_cast<size_t>(hd)), sn(cs.size());
  for (int64_t i = 0; i < hd / 2; ++i) {  // the decoder's exact tables
    const float a = static_cast<float>(p) / std::pow(theta, static_cast<float>(2 * i) / static_cast<float>(hd));
    cs[i] = cs[i + hd / 2] = std::cos(a);
    sn[i] = sn[i + hd / 2] = std::sin(a);
  }
  const int32_t p32 = static_cast<int32_t>(p);
  ggml_backend_tensor_set(qkv, x.data(), 0, ggml_nbytes(qkv));
  for (ggml_tensor* t : {kc, kg}) ggml_backend_tensor_set(t, kh.data(), 0, ggml_nbytes(t));
  for (ggml_tensor* t : {vc, vg}) ggml_backend_tensor_set(t, vh.data(), 0, ggml_nbytes(t));
  ggml_backend_tensor_set(cos, cs.data(), 0, ggml_nbytes(cos));
  ggml_backend_tensor_set(sin, sn.data(), 0, ggml_nbytes(sin));
  ggml_backend_tensor_set(pos, &p32, 0, sizeof p32);
  check(ggml_backend_graph_compute(cpu.backend.get(), gf) == GGML_STATUS_SUCCESS, ErrorCode::Internal, "graph compute failed");

  AttentionAppendCheck r;
  r.ggml.resize(static_cast<size_t>(nh * hd));
  r.ours.resize(r.ggml.size());
  ggml_backend_tensor_get(theirs, r.ggml.data(), 0, ggml_nbytes(theirs));
  ggml_backend_tensor_get(ours, r.ours.data(), 0, ggml_nbytes(ours));
  const auto last_rows = [&](ggml_tensor* k, ggml_tensor* v) {  // position p of a cache as floats
    std::vector<uint16_t> h(static_cast<size_t>(nkv * hd));
    std::vector<float> out;
    for (ggml_tensor* t : {k, v}) {
      ggml_backend_tensor_get(t, h.data(), p * t->nb[2], h.size() * sizeof(uint16_t));
      for (uint16_t e : h) out.push_back(ggml_fp16_to_fp32(e));
    }
    return out;
  };
  r.ggml_cache = last_rows(kg, vg);
  r.ours_cache = last_rows(kc, vc);

  // Reference: rotate in f32 with the tables, append in f16, attend in double precision.
  const auto rotate = [&](const float* in, float* out) {
    for (int64_t i = 0; i < hd / 2; ++i) {
      out[i] = in[i] * cs[i] - in[i + hd / 2] * sn[i];
      out[i + hd / 2] = in[i + hd / 2] * cs[i + hd / 2] + in[i] * sn[i + hd / 2];
    }
  };
  std::vector<float> qr(static_cast<size_t>(nh * hd)), kr(static_cast<size_t>(hd));
  for (int64_t h = 0; h < nh; ++h) rotate(x.data() + h * hd, qr.data() + h * hd);
  for (int64_t g = 0; g < nkv; ++g) {
    rotate(x.data() + (nh + g) * hd, kr.data());
    for (int64_t d = 0; d < hd; ++d) {
      kh[static_cast<size_t>((p * nkv + g) * hd + d)] = ggml_fp32_to_fp16(kr[static_cast<size_t>(d)]);
      vh[static_cast<size_t>((p * nkv + g) * hd + d)] = ggml_fp32_to_fp16(x[static_cast<size_t>((nh + nkv + g) * hd + d)]);
    }
  }
  for (const auto* cache : {&kh, &vh}) {
    for (int64_t i = 0; i < nkv * hd; ++i) r.reference_cache.push_back(ggml_fp16_to_fp32((*cache)[static_cast<size_t>(p * nkv * hd + i)]));
  }
  r.reference.resize(r.ours.size());
  kernels::attention_f16_reference(qr.data(), kh.data(), vh.data(), r.reference.data(), hd, nh, nkv, 1, L);
  return r;
}

}  // namespace vl3::bench
