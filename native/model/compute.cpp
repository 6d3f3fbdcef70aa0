#include "model/compute.h"

#include "common/status.h"
#include "ggml-cpu.h"

namespace vl3 {
namespace {

bool abort_requested(void* data) {
  return data != nullptr && static_cast<const std::atomic<bool>*>(data)->load();
}

}  // namespace

GraphContext new_graph_context(size_t n_nodes) {
  ggml_init_params ip{ggml_tensor_overhead() * n_nodes + ggml_graph_overhead_custom(n_nodes, false), nullptr, true};
  GraphContext ctx(ggml_init(ip));
  check(ctx != nullptr, ErrorCode::OutOfMemory, "Cannot allocate a compute graph");
  return ctx;
}

void compute_graph(ggml_backend_t backend, ggml_cgraph* gf, int threads, const std::atomic<bool>* abort_flag,
                   const char* what) {
  const bool cpu = ggml_backend_is_cpu(backend);
  if (cpu) {
    ggml_backend_cpu_set_n_threads(backend, threads);
    ggml_backend_cpu_set_abort_callback(backend, abort_requested, const_cast<std::atomic<bool>*>(abort_flag));
  }
  const ggml_status st = ggml_backend_graph_compute(backend, gf);
  if (cpu) ggml_backend_cpu_set_abort_callback(backend, nullptr, nullptr);
  if (abort_flag != nullptr && abort_flag->load()) throw Error(ErrorCode::Aborted, format("%s was aborted", what));
  check(st == GGML_STATUS_SUCCESS, ErrorCode::Internal, format("%s failed in the ggml backend", what));
}

void compute_graph_sched(ggml_backend_sched_t sched, ggml_cgraph* gf, int threads, const std::atomic<bool>* abort_flag,
                         const char* what) {
  const int n = ggml_backend_sched_get_n_backends(sched);
  auto each_cpu = [&](auto fn) {
    for (int i = 0; i < n; ++i) {
      ggml_backend_t b = ggml_backend_sched_get_backend(sched, i);
      if (ggml_backend_is_cpu(b)) fn(b);
    }
  };
  each_cpu([&](ggml_backend_t b) {
    ggml_backend_cpu_set_n_threads(b, threads);
    ggml_backend_cpu_set_abort_callback(b, abort_requested, const_cast<std::atomic<bool>*>(abort_flag));
  });
  const ggml_status st = ggml_backend_sched_graph_compute(sched, gf);
  each_cpu([](ggml_backend_t b) { ggml_backend_cpu_set_abort_callback(b, nullptr, nullptr); });
  if (abort_flag != nullptr && abort_flag->load()) throw Error(ErrorCode::Aborted, format("%s was aborted", what));
  check(st == GGML_STATUS_SUCCESS, ErrorCode::Internal, format("%s failed in the ggml backend", what));
}

}  // namespace vl3
