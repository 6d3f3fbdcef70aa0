// A validated, read-only view of a GGUF file: metadata with typed getters whose errors name
// the file and key, tensor infos checked against the file size, and tensor reads (optionally
// dequantized to f32). Nothing here can reach a ggml assertion on a malformed file.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/file_io.h"
#include "ggml.h"

namespace vl3 {

/** A metadata value. Scalars use one member; arrays use one of the vectors. */
struct GgufValue {
  enum class Kind { Int, UInt, Float, Bool, Str, IntArray, UIntArray, FloatArray, BoolArray, StrArray };
  Kind kind = Kind::Int;
  int64_t i = 0;
  uint64_t u = 0;
  double f = 0;
  bool b = false;
  std::string s;
  std::vector<int64_t> ints;
  std::vector<double> floats;
  std::vector<std::string> strs;
  bool is_array() const { return kind >= Kind::IntArray; }
};

struct GgufTensorInfo {
  std::string name;
  ggml_type type = GGML_TYPE_F32;
  int n_dims = 0;
  int64_t ne[GGML_MAX_DIMS] = {1, 1, 1, 1};
  uint64_t offset = 0;  // absolute offset in the file
  uint64_t nbytes = 0;
  int64_t nelements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
};

class GgufFile {
 public:
  /** Opens and validates `path`; throws vl3::Error (INVALID_MODEL / IO_ERROR) naming the file. */
  explicit GgufFile(const std::string& path);

  const std::string& path() const { return file_->path(); }
  uint64_t file_size() const { return file_->size(); }
  const std::map<std::string, GgufValue>& metadata() const { return meta_; }
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }

  bool has(const std::string& key) const { return meta_.count(key) != 0; }
  uint64_t get_uint(const std::string& key) const;
  double get_float(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  std::string get_string(const std::string& key) const;
  std::vector<std::string> get_strings(const std::string& key) const;
  std::vector<int64_t> get_ints(const std::string& key) const;
  std::vector<double> get_floats(const std::string& key) const;

  /** nullptr when absent. */
  const GgufTensorInfo* find_tensor(const std::string& name) const;
  /** Raw bytes of a tensor (its stored type). */
  void read_raw(const GgufTensorInfo& info, void* dst);
  /** The tensor widened / dequantized to f32. */
  std::vector<float> read_f32(const GgufTensorInfo& info);

 private:
  const GgufValue& require(const std::string& key, const char* expected) const;

  std::unique_ptr<InputFile> file_;
  std::map<std::string, GgufValue> meta_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> by_name_;
};

}  // namespace vl3
