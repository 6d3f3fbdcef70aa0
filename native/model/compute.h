// Running a built graph: thread count, abort flag, and errors instead of ggml status codes.
// Shared by the vision encoder and the decoder.
#pragma once

#include <atomic>
#include <memory>

#include "ggml-backend.h"
#include "ggml.h"

namespace vl3 {

struct GgmlContextDeleter {
  void operator()(ggml_context* c) const { ggml_free(c); }
};
/** A metadata-only (no_alloc) ggml context for one graph. */
using GraphContext = std::unique_ptr<ggml_context, GgmlContextDeleter>;

/** A no_alloc context with room for `n_nodes` tensors and a graph of that size. */
GraphContext new_graph_context(size_t n_nodes);

/**
 * Computes `gf` on `backend` with `threads` CPU threads. When `abort_flag` is raised the graph
 * stops between nodes and this throws ABORTED ("<what> was aborted"); a backend failure throws
 * INTERNAL.
 */
void compute_graph(ggml_backend_t backend, ggml_cgraph* gf, int threads, const std::atomic<bool>* abort_flag,
                   const char* what);

/** compute_graph for a graph split across backends by `sched` (threads and abort go to its CPU backends). */
void compute_graph_sched(ggml_backend_sched_t sched, ggml_cgraph* gf, int threads, const std::atomic<bool>* abort_flag,
                         const char* what);

}  // namespace vl3
