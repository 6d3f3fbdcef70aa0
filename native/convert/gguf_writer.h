// Streams a GGUF file tensor by tensor from checkpoint bytes: memory stays bounded by one
// chunk of rows, whatever the model size. The file appears under its name only when complete.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "convert/quantize.h"

namespace vl3::convert {

/** One metadata entry. `kind` selects which member holds the value. */
struct KvEntry {
  enum class Kind { U32, I32, U64, F32, Bool, Str, ArrStr, ArrI32, ArrU32, ArrF32 };
  std::string key;
  Kind kind = Kind::U32;
  uint64_t u = 0;
  int64_t i = 0;
  double f = 0;
  bool b = false;
  std::string s;
  std::vector<std::string> strs;
  std::vector<int32_t> i32s;
  std::vector<uint32_t> u32s;
  std::vector<float> f32s;
};

/** Where a tensor's bytes are in the checkpoint (a safetensors data range). */
struct TensorSource {
  std::string file;
  uint64_t offset = 0;  // absolute offset in `file`
  uint64_t nbytes = 0;
  SourceDtype dtype = SourceDtype::F32;
};

/** One output tensor: GGUF name, ggml shape (ne[0] fastest), target type, source bytes. */
struct TensorPlan {
  std::string name;
  std::vector<int64_t> ne;
  ggml_type type = GGML_TYPE_F32;
  TensorSource src;
};

struct WriteProgress {
  size_t tensor_index;
  size_t tensor_count;
  const std::string* tensor_name;
  uint64_t bytes_done;   // source bytes consumed so far
  uint64_t bytes_total;  // source bytes of all tensors
};

struct WriteOptions {
  int threads = 1;
  const std::atomic<bool>* cancel = nullptr;
  std::function<void(const WriteProgress&)> on_progress;
};

/**
 * Validates the whole plan (names, shapes, types, block sizes, source ranges) before writing
 * a byte, then writes `path`. Throws vl3::Error; on any failure no file is left at `path`.
 */
void write_gguf(const std::string& path, const std::vector<KvEntry>& kvs,
                const std::vector<TensorPlan>& tensors, const WriteOptions& options);

}  // namespace vl3::convert
