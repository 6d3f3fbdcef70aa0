// Model weights: every tensor of a GGUF file loaded into one ggml backend buffer, with
// shape-checked lookup so a wrong file fails with a message instead of a ggml assertion.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ggml-backend.h"
#include "ggml.h"
#include "common/file_io.h"
#include "model/gguf_file.h"

namespace vl3 {

/**
 * Whether ggml's matrix ops (mul_mat, get_rows) take weights of this type: f32, f16, bf16 and the
 * quantized block types with a CPU dot product. Integer and f64 tensors pass ggml's shape checks
 * but crash or abort at first use, so loading refuses them.
 */
bool matrix_type_supported(ggml_type type);

class Weights {
 public:
  /**
   * Loads all tensors of `file` into buffers of `backend`. On the CPU, Q8_0 / Q6_K / Q4_K matrices go
   * into our packed layout where those kernels are on (kernels/int8_matmul.h; use them through
   * layers::matmul and layers::get_rows); elsewhere, matrices whose type has an interleaved
   * ("repacked") ggml kernel for this CPU go into ggml's CPU_REPACK buffer (the layout llama.cpp
   * uses), except those named in `no_repack` (rows read by get_rows, which that layout cannot
   * serve). The other CPU tensors are used in place in the memory-mapped file (no copy, pages shared
   * through the page cache); elsewhere, or where mapping fails, tensors are read into backend
   * memory. Throws vl3::Error.
   */
  Weights(GgufFile& file, ggml_backend_t backend, std::initializer_list<const char*> no_repack = {});

  /** Which backend holds a tensor, by name (split models: some layers on the GPU, the rest on the CPU). */
  using Placement = std::function<ggml_backend_t(const std::string& name)>;
  /**
   * Tensors loaded as one: `parts` laid end to end along their last dimension (rows of matrices,
   * elements of vectors) under the new name `name`, so one matmul replaces several. Applied only
   * when every part exists with the same type, width and backend and the result is copied anyway
   * (device memory, a repack buffer, no mapping): a copy would cost more load time and memory than
   * the fused matmul saves. Otherwise the parts stay separate (check with has(name)).
   */
  struct Fusion {
    std::string name;
    std::vector<std::string> parts;
    std::string follows = {};  // if set: applied exactly when this earlier fusion is (biases follow their weights)
  };
  /** As above, each tensor in the buffers of `place(name)`, with `fusions` applied. */
  Weights(GgufFile& file, const Placement& place, std::initializer_list<const char*> no_repack = {},
          const std::vector<Fusion>& fusions = {});
  ~Weights();
  Weights(const Weights&) = delete;
  Weights& operator=(const Weights&) = delete;

  /**
   * The tensor `name` with ggml shape `ne` (ne[0] fastest). Throws INVALID_MODEL naming the file
   * and tensor when it is missing or misshaped. `f32_only` also requires type f32 (norms, biases);
   * otherwise the type must be one that ggml's matrix ops take (matrix_type_supported).
   */
  ggml_tensor* get(const std::string& name, std::initializer_list<int64_t> ne, bool f32_only = false) const;
  bool has(const std::string& name) const { return tensors_.count(name) != 0; }
  size_t bytes() const;

 private:
  /**
   * The tensors on one backend: copied ones, those in its CPU_REPACK buffer, (CPU) mapped ones, and
   * (CPU) ones packed for our int8 kernels: byte tensors in `ctx` with an alias of the original type
   * and shape in `alias_ctx` placed on each.
   */
  struct Group {
    ggml_backend_t backend = nullptr;
    ggml_backend_buffer_type_t repack_buft = nullptr;  // the backend's CPU_REPACK type, if any
    ggml_context* ctx = nullptr;
    ggml_context* repack_ctx = nullptr;
    ggml_context* map_ctx = nullptr;
    ggml_backend_buffer_t buffer = nullptr;
    ggml_backend_buffer_t repack_buffer = nullptr;
    ggml_backend_buffer_t map_buffer = nullptr;  // over map_: tensors used in place in the file
    ggml_context* alias_ctx = nullptr;
  };
  void load(GgufFile& file, const Placement& place, std::initializer_list<const char*> no_repack,
            const std::vector<Fusion>& fusions);
  void release();

  std::string path_;
  std::unique_ptr<MappedFile> map_;  // the GGUF file, when mapped
  size_t mapped_bytes_ = 0;
  std::vector<Group> groups_;
  std::map<std::string, ggml_tensor*> tensors_;
};

}  // namespace vl3
