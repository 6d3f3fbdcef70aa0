#include "bench/matmul_bench.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <memory>
#include <random>
#include <vector>

#include "common/status.h"
#include "convert/quantize.h"
#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "kernels/int8_matmul.h"
#include "model/weights.h"

namespace vl3::bench {
namespace {

// One Y[m,n] = X[m,k] · W[n,k]^T graph on the ggml CPU backend, W and X random (seeded).
// "q8_0x8" / "q6_Kx8" / "q4_Kx8": those weights packed for kernels::int8_mul_mat.
class Matmul {
 public:
  Matmul(const std::string& type_name, int m, int n, int k, int threads)
      : ctx_(nullptr, ggml_free),
        alias_ctx_(nullptr, ggml_free),
        backend_(nullptr, ggml_backend_free),
        buf_(nullptr, ggml_backend_buffer_free) {
    const bool packed = type_name.size() > 2 && type_name.compare(type_name.size() - 2, 2, "x8") == 0;
    ggml_type type;
    check(convert::parse_ggml_type(packed ? type_name.substr(0, type_name.size() - 2) : type_name, &type),
          ErrorCode::InvalidArgument, "Unknown ggml type " + type_name);
    check(matrix_type_supported(type) && !ggml_quantize_requires_imatrix(type), ErrorCode::InvalidArgument,
          format("Expected a weight type with a matrix kernel and a quantizer (f32, f16, bf16, q8_0, q4_0, q4_K, "
                 "q6_K, ...) for type but received %s",
                 type_name.c_str()));
    check(m > 0 && n > 0 && k > 0 && m <= 65536 && n <= 65536 && k <= 65536, ErrorCode::InvalidArgument,
          "Matrix sizes must be between 1 and 65536");
    check(k % ggml_blck_size(type) == 0, ErrorCode::InvalidArgument,
          format("k = %d is not a multiple of %s's block size", k, type_name.c_str()));
    check(!packed || (kernels::int8_packable(type, n, k) && kernels::int8_matmul_enabled()), ErrorCode::InvalidArgument,
          type_name + " needs a Q8_0, Q6_K or Q4_K type, n % 8 == 0, and an AVX2 CPU without AVX-512 in this build "
                      "(and VL3_CPU_KERNELS unset)");
    check(threads >= 1 && threads <= 512, ErrorCode::InvalidArgument, "threads must be 1..512");

    ggml_init_params ip{ggml_tensor_overhead() * 8 + ggml_graph_overhead(), nullptr, true};
    ctx_.reset(ggml_init(ip));
    alias_ctx_.reset(ggml_init(ip));
    ggml_tensor* w = w_ = ggml_new_tensor_2d(packed ? alias_ctx_.get() : ctx_.get(), type, k, n);
    // packed: the data lives in a byte tensor of the packed size; w is an alias placed on it
    ggml_tensor* storage = packed ? ggml_new_tensor_1d(ctx_.get(), GGML_TYPE_I8, kernels::int8_storage_size(type, n, k)) : w;
    x_ = ggml_new_tensor_2d(ctx_.get(), GGML_TYPE_F32, k, m);
    y_ = packed ? kernels::int8_mul_mat(ctx_.get(), w, x_) : ggml_mul_mat(ctx_.get(), w, x_);  // [n, m]
    gf_ = ggml_new_graph(ctx_.get());
    ggml_build_forward_expand(gf_, y_);

    backend_.reset(ggml_backend_cpu_init());
    check(backend_ != nullptr, ErrorCode::Internal, "ggml CPU backend failed to start");
    ggml_backend_cpu_set_n_threads(backend_.get(), threads);
    buf_.reset(ggml_backend_alloc_ctx_tensors(ctx_.get(), backend_.get()));
    check(buf_ != nullptr, ErrorCode::OutOfMemory, "Cannot allocate benchmark tensors");

    std::mt19937 gen(42);
    std::normal_distribution<float> dist(0.f, 0.5f);
    std::vector<float> wf(static_cast<size_t>(n) * k);
    xf_.resize(static_cast<size_t>(m) * k);
    for (auto& v : wf) v = dist(gen);
    for (auto& v : xf_) v = dist(gen);
    wq_.resize(ggml_nbytes(w));
    convert::encode_rows(type, convert::SourceDtype::F32, wf.data(), wf.data(), wq_.data(), n, k);
    if (type == GGML_TYPE_Q8_0) {  // -128 is a valid Q8_0 quant (ggml's quantizer never writes it): one in every 7 blocks
      for (size_t b = 0; b < wq_.size() / 34; b += 7) wq_[b * 34 + 2 + b % 32] = 0x80;
    }
    if (packed) {
      std::vector<uint8_t> repacked(ggml_nbytes(storage));
      kernels::int8_pack(type, wq_.data(), repacked.data(), n, k);
      wq_.swap(repacked);
      check(ggml_backend_tensor_alloc(buf_.get(), w, storage->data) == GGML_STATUS_SUCCESS, ErrorCode::Internal,
            "cannot place the packed weights");
      kernels::int8_mark(w);
    }
    ggml_backend_tensor_set(storage, wq_.data(), 0, wq_.size());
    ggml_backend_tensor_set(x_, xf_.data(), 0, xf_.size() * sizeof(float));
  }

  double run() {
    const auto t0 = std::chrono::steady_clock::now();
    check(ggml_backend_graph_compute(backend_.get(), gf_) == GGML_STATUS_SUCCESS, ErrorCode::Internal,
          "graph compute failed");
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  void clear_output() {  // NaN everywhere, so a run that skips outputs shows
    const std::vector<float> nan(ggml_nelements(y_), std::numeric_limits<float>::quiet_NaN());
    ggml_backend_tensor_set(y_, nan.data(), 0, nan.size() * sizeof(float));
  }
  std::vector<float> output() const {
    std::vector<float> y(ggml_nelements(y_));
    ggml_backend_tensor_get(y_, y.data(), 0, y.size() * sizeof(float));
    return y;
  }
  const std::vector<float>& x() const { return xf_; }
  const std::vector<uint8_t>& weights() const { return wq_; }  // as uploaded (packed for *x8)

  /** Rows `ids` of W through ggml_get_rows (plain) or int8_get_rows (packed), on this backend. */
  std::vector<float> rows(const std::vector<int32_t>& ids) {
    ggml_init_params ip{ggml_tensor_overhead() * 4 + ggml_graph_overhead(), nullptr, true};
    std::unique_ptr<ggml_context, void (*)(ggml_context*)> ctx(ggml_init(ip), ggml_free);
    ggml_tensor* id = ggml_new_tensor_1d(ctx.get(), GGML_TYPE_I32, static_cast<int64_t>(ids.size()));
    ggml_tensor* y = kernels::int8_is_packed(w_) ? kernels::int8_get_rows(ctx.get(), w_, id) : ggml_get_rows(ctx.get(), w_, id);
    ggml_cgraph* gf = ggml_new_graph(ctx.get());
    ggml_build_forward_expand(gf, y);
    std::unique_ptr<ggml_backend_buffer, void (*)(ggml_backend_buffer_t)> buf(
        ggml_backend_alloc_ctx_tensors(ctx.get(), backend_.get()), ggml_backend_buffer_free);
    check(buf != nullptr, ErrorCode::OutOfMemory, "Cannot allocate benchmark tensors");
    ggml_backend_tensor_set(id, ids.data(), 0, ids.size() * sizeof(int32_t));
    check(ggml_backend_graph_compute(backend_.get(), gf) == GGML_STATUS_SUCCESS, ErrorCode::Internal, "graph compute failed");
    std::vector<float> out(ggml_nelements(y));
    ggml_backend_tensor_get(y, out.data(), 0, out.size() * sizeof(float));
    return out;
  }

 private:
  std::unique_ptr<ggml_context, void (*)(ggml_context*)> ctx_, alias_ctx_;
  std::unique_ptr<ggml_backend, void (*)(ggml_backend_t)> backend_;
  std::unique_ptr<ggml_backend_buffer, void (*)(ggml_backend_buffer_t)> buf_;
  ggml_tensor *w_ = nullptr, *x_ = nullptr, *y_ = nullptr;
  ggml_cgraph* gf_ = nullptr;
  std::vector<float> xf_;
  std::vector<uint8_t> wq_;
};

}  // namespace

MatmulResult run_matmul(const std::string& type_name, int m, int n, int k, int threads, int reps) {
  check(reps >= 1 && reps <= 1000, ErrorCode::InvalidArgument, "reps must be 1..1000");
  Matmul mm(type_name, m, n, k, threads);
  double best = 1e30;
  for (int r = 0; r <= reps; ++r) {
    const double s = mm.run();
    if (r > 0) best = std::min(best, s);  // rep 0 warms caches and the thread pool
  }
  return {best, 2.0 * m * n * k / best / 1e9};
}

PackedCheck check_packed(const std::string& type_name, int m, int n, int k, int threads) {
  ggml_type type;
  check(convert::parse_ggml_type(type_name, &type), ErrorCode::InvalidArgument, "Unknown ggml type " + type_name);
  Matmul plain(type_name, m, n, k, threads), packed(type_name + "x8", m, n, k, threads);
  plain.run();
  packed.run();  // twice: the second finds the decode work counters as the first left them
  packed.clear_output();
  packed.run();
  const std::vector<int32_t> ids = {0, n - 1, n / 2, 3 % n, 1 % n};
  PackedCheck r{plain.output(), packed.output(), std::vector<float>(static_cast<size_t>(m) * n), plain.rows(ids),
                packed.rows(ids), {}, {}};
  std::vector<uint8_t> xq(kernels::int8_activation_bytes(type, m, k));
  kernels::int8_quantize(type, packed.x().data(), xq.data(), m, k);
  kernels::int8_gemm_reference(type, packed.weights().data(), xq.data(), r.reference.data(), n, k, m);

  std::vector<float> x = packed.x();
  const int block = type == GGML_TYPE_Q8_0 ? 32 : 256;
  const auto top = [&](int b) {  // largest |x| of block b of row 0
    float a = 0;
    for (int j = b * block; j < (b + 1) * block; ++j) a = std::max(a, std::abs(x[j]));
    return a;
  };
  const float tie = 2 * top(0);
  x[3] = -tie;
  x[10] = tie;
  if (k >= 3 * block) {
    std::fill(x.begin() + block, x.begin() + 2 * block, 0.0f);
    x[2 * block] = 127.0f;  // iscale -1 (Q8_K): every other value lands halfway between integers
    for (int j = 2 * block + 1; j < 3 * block; ++j) x[j] = static_cast<float>(j % 11) - 5.5f;
  }
  if (k >= 2 * block) x[k - 1] = std::numeric_limits<float>::infinity();
  r.activations.resize(xq.size());
  r.activations_ggml.resize(xq.size());
  kernels::int8_quantize(type, x.data(), r.activations.data(), m, k);
  kernels::int8_quantize_ggml(type, x.data(), r.activations_ggml.data(), m, k);
  return r;
}

}  // namespace vl3::bench
