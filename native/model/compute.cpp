#include "model/compute.h"

#include <vector>

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

namespace {

/**
 * Runs `compute` with `threads` and the abort flag set on the CPU backends among `backends`, then
 * turns an abort or a failed status into an error.
 */
template <typename Compute>
void run_graph(const std::vector<ggml_backend_t>& backends, Compute compute, int threads,
               const std::atomic<bool>* abort_flag, const char* what) {
  for (ggml_backend_t b : backends) {
    if (!ggml_backend_is_cpu(b)) continue;
    ggml_backend_cpu_set_n_threads(b, threads);
    ggml_backend_cpu_set_abort_callback(b, abort_requested, const_cast<std::atomic<bool>*>(abort_flag));
  }
  const ggml_status st = compute();
  for (ggml_backend_t b : backends) {
    if (ggml_backend_is_cpu(b)) ggml_backend_cpu_set_abort_callback(b, nullptr, nullptr);
  }
  if (abort_flag != nullptr && abort_flag->load()) throw Error(ErrorCode::Aborted, format("%s was aborted", what));
  check(st == GGML_STATUS_SUCCESS, ErrorCode::Internal, format("%s failed in the ggml backend", what));
}

}  // namespace

void compute_graph(ggml_backend_t backend, ggml_cgraph* gf, int threads, const std::atomic<bool>* abort_flag,
                   const char* what) {
  run_graph({backend}, [&] { return ggml_backend_graph_compute(backend, gf); }, threads, abort_flag, what);
}

void compute_graph_sched(ggml_backend_sched_t sched, ggml_cgraph* gf, int threads, const std::atomic<bool>* abort_flag,
                         const char* what) {
  std::vector<ggml_backend_t> backends;
  for (int i = 0; i < ggml_backend_sched_get_n_backends(sched); ++i) backends.push_back(ggml_backend_sched_get_backend(sched, i));
  run_graph(backends, [&] { return ggml_backend_sched_graph_compute(sched, gf); }, threads, abort_flag, what);
}

}  // namespace vl3
