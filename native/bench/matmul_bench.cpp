#include "bench/matmul_bench.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <random>
#include <vector>

#include "common/status.h"
#include "convert/quantize.h"
#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"

namespace vl3::bench {

MatmulResult run_matmul(const std::string& type_name, int m, int n, int k, int threads, int reps) {
  ggml_type type;
  check(convert::parse_ggml_type(type_name, &type), ErrorCode::InvalidArgument, "Unknown ggml type " + type_name);
  check(m > 0 && n > 0 && k > 0 && m <= 65536 && n <= 65536 && k <= 65536, ErrorCode::InvalidArgument,
        "Matrix sizes must be between 1 and 65536");
  check(k % ggml_blck_size(type) == 0, ErrorCode::InvalidArgument,
        format("k = %d is not a multiple of %s's block size", k, type_name.c_str()));
  check(threads >= 1 && threads <= 512 && reps >= 1 && reps <= 1000, ErrorCode::InvalidArgument,
        "threads must be 1..512 and reps 1..1000");

  ggml_init_params ip{ggml_tensor_overhead() * 8 + ggml_graph_overhead(), nullptr, true};
  std::unique_ptr<ggml_context, void (*)(ggml_context*)> ctx(ggml_init(ip), ggml_free);
  ggml_tensor* w = ggml_new_tensor_2d(ctx.get(), type, k, n);
  ggml_tensor* x = ggml_new_tensor_2d(ctx.get(), GGML_TYPE_F32, k, m);
  ggml_tensor* y = ggml_mul_mat(ctx.get(), w, x);  // [n, m]
  ggml_cgraph* gf = ggml_new_graph(ctx.get());
  ggml_build_forward_expand(gf, y);

  std::unique_ptr<ggml_backend, void (*)(ggml_backend_t)> backend(ggml_backend_cpu_init(), ggml_backend_free);
  check(backend != nullptr, ErrorCode::Internal, "ggml CPU backend failed to start");
  ggml_backend_cpu_set_n_threads(backend.get(), threads);
  std::unique_ptr<ggml_backend_buffer, void (*)(ggml_backend_buffer_t)> buf(
      ggml_backend_alloc_ctx_tensors(ctx.get(), backend.get()), ggml_backend_buffer_free);
  check(buf != nullptr, ErrorCode::OutOfMemory, "Cannot allocate benchmark tensors");

  std::mt19937 gen(42);
  std::normal_distribution<float> dist(0.f, 0.5f);
  std::vector<float> wf(static_cast<size_t>(n) * k), xf(static_cast<size_t>(m) * k);
  for (auto& v : wf) v = dist(gen);
  for (auto& v : xf) v = dist(gen);
  std::vector<uint8_t> wq(ggml_nbytes(w));
  convert::encode_rows(type, convert::SourceDtype::F32, wf.data(), wf.data(), wq.data(), n, k);
  ggml_backend_tensor_set(w, wq.data(), 0, wq.size());
  ggml_backend_tensor_set(x, xf.data(), 0, xf.size() * sizeof(float));

  double best = 1e30;
  for (int r = 0; r <= reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    check(ggml_backend_graph_compute(backend.get(), gf) == GGML_STATUS_SUCCESS, ErrorCode::Internal, "graph compute failed");
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (r > 0) best = std::min(best, s);  // rep 0 warms caches and the thread pool
  }
  return {best, 2.0 * m * n * k / best / 1e9};
}

}  // namespace vl3::bench
