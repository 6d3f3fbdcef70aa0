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
  std::unique_ptr<ggml_backend, void (*)(ggml_backend_t)> backend(ggml_backend_cpu_init(), ggml_backend_free);
  check(backend != nullptr, ErrorCode::Internal, "ggml CPU backend failed to start");
  ggml_backend_cpu_set_n_threads(backend.get(), threads);
  std::unique_ptr<ggml_backend_buffer, void (*)(ggml_backend_buffer_t)> buf(
      ggml_backend_alloc_ctx_tensors(ctx.get(), backend.get()), ggml_backend_buffer_free);
  check(buf != nullptr, ErrorCode::OutOfMemory, "Cannot allocate check tensors");

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
  check(ggml_backend_graph_compute(backend.get(), gf) == GGML_STATUS_SUCCESS, ErrorCode::Internal, "graph compute failed");
  AttentionCheck r{std::vector<float>(qf.size()), std::vector<float>(qf.size()), std::vector<float>(qf.size())};
  ggml_backend_tensor_get(theirs, r.ggml.data(), 0, ggml_nbytes(theirs));
  ggml_backend_tensor_get(ours, r.ours.data(), 0, ggml_nbytes(ours));
  kernels::attention_f16_reference(qf.data(), kh.data(), vh.data(), r.reference.data(), hd, nh, nkv, n, L);
  return r;
}

}  // namespace vl3::bench
