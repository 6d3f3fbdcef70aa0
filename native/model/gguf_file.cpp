#include "model/gguf_file.h"

#include <cstring>

#include "common/status.h"
#include "gguf.h"

namespace vl3 {
namespace {

struct GgufDeleter {
  void operator()(gguf_context* c) const { gguf_free(c); }
};

template <typename T>
T read_elem(const void* data, size_t i) {
  T v;
  std::memcpy(&v, static_cast<const uint8_t*>(data) + i * sizeof(T), sizeof(T));
  return v;
}

GgufValue convert_value(const gguf_context* ctx, int64_t id) {
  GgufValue v;
  const gguf_type type = gguf_get_kv_type(ctx, id);
  if (type == GGUF_TYPE_ARRAY) {
    const gguf_type at = gguf_get_arr_type(ctx, id);
    const size_t n = gguf_get_arr_n(ctx, id);
    if (at == GGUF_TYPE_STRING) {
      v.kind = GgufValue::Kind::StrArray;
      v.strs.reserve(n);
      for (size_t i = 0; i < n; ++i) v.strs.emplace_back(gguf_get_arr_str(ctx, id, i));
      return v;
    }
    const void* d = gguf_get_arr_data(ctx, id);
    switch (at) {
      case GGUF_TYPE_UINT8: v.kind = GgufValue::Kind::UIntArray; for (size_t i = 0; i < n; ++i) v.ints.push_back(read_elem<uint8_t>(d, i)); break;
      case GGUF_TYPE_INT8: v.kind = GgufValue::Kind::IntArray; for (size_t i = 0; i < n; ++i) v.ints.push_back(read_elem<int8_t>(d, i)); break;
      case GGUF_TYPE_UINT16: v.kind = GgufValue::Kind::UIntArray; for (size_t i = 0; i < n; ++i) v.ints.push_back(read_elem<uint16_t>(d, i)); break;
      case GGUF_TYPE_INT16: v.kind = GgufValue::Kind::IntArray; for (size_t i = 0; i < n; ++i) v.ints.push_back(read_elem<int16_t>(d, i)); break;
      case GGUF_TYPE_UINT32: v.kind = GgufValue::Kind::UIntArray; for (size_t i = 0; i < n; ++i) v.ints.push_back(read_elem<uint32_t>(d, i)); break;
      case GGUF_TYPE_INT32: v.kind = GgufValue::Kind::IntArray; for (size_t i = 0; i < n; ++i) v.ints.push_back(read_elem<int32_t>(d, i)); break;
      case GGUF_TYPE_UINT64: v.kind = GgufValue::Kind::UIntArray; for (size_t i = 0; i < n; ++i) v.ints.push_back(static_cast<int64_t>(read_elem<uint64_t>(d, i))); break;
      case GGUF_TYPE_INT64: v.kind = GgufValue::Kind::IntArray; for (size_t i = 0; i < n; ++i) v.ints.push_back(read_elem<int64_t>(d, i)); break;
      case GGUF_TYPE_FLOAT32: v.kind = GgufValue::Kind::FloatArray; for (size_t i = 0; i < n; ++i) v.floats.push_back(read_elem<float>(d, i)); break;
      case GGUF_TYPE_FLOAT64: v.kind = GgufValue::Kind::FloatArray; for (size_t i = 0; i < n; ++i) v.floats.push_back(read_elem<double>(d, i)); break;
      case GGUF_TYPE_BOOL: v.kind = GgufValue::Kind::BoolArray; for (size_t i = 0; i < n; ++i) v.ints.push_back(read_elem<int8_t>(d, i) != 0); break;
      default: v.kind = GgufValue::Kind::IntArray; break;  // nested arrays: kept empty
    }
    return v;
  }
  switch (type) {
    case GGUF_TYPE_UINT8: v.kind = GgufValue::Kind::UInt; v.u = gguf_get_val_u8(ctx, id); break;
    case GGUF_TYPE_INT8: v.kind = GgufValue::Kind::Int; v.i = gguf_get_val_i8(ctx, id); break;
    case GGUF_TYPE_UINT16: v.kind = GgufValue::Kind::UInt; v.u = gguf_get_val_u16(ctx, id); break;
    case GGUF_TYPE_INT16: v.kind = GgufValue::Kind::Int; v.i = gguf_get_val_i16(ctx, id); break;
    case GGUF_TYPE_UINT32: v.kind = GgufValue::Kind::UInt; v.u = gguf_get_val_u32(ctx, id); break;
    case GGUF_TYPE_INT32: v.kind = GgufValue::Kind::Int; v.i = gguf_get_val_i32(ctx, id); break;
    case GGUF_TYPE_UINT64: v.kind = GgufValue::Kind::UInt; v.u = gguf_get_val_u64(ctx, id); break;
    case GGUF_TYPE_INT64: v.kind = GgufValue::Kind::Int; v.i = gguf_get_val_i64(ctx, id); break;
    case GGUF_TYPE_FLOAT32: v.kind = GgufValue::Kind::Float; v.f = gguf_get_val_f32(ctx, id); break;
    case GGUF_TYPE_FLOAT64: v.kind = GgufValue::Kind::Float; v.f = gguf_get_val_f64(ctx, id); break;
    case GGUF_TYPE_BOOL: v.kind = GgufValue::Kind::Bool; v.b = gguf_get_val_bool(ctx, id); break;
    case GGUF_TYPE_STRING: v.kind = GgufValue::Kind::Str; v.s = gguf_get_val_str(ctx, id); break;
    default: break;
  }
  return v;
}

const char* kind_name(GgufValue::Kind k) {
  switch (k) {
    case GgufValue::Kind::Int: return "a signed integer";
    case GgufValue::Kind::UInt: return "an unsigned integer";
    case GgufValue::Kind::Float: return "a float";
    case GgufValue::Kind::Bool: return "a bool";
    case GgufValue::Kind::Str: return "a string";
    default: return "an array";
  }
}

}  // namespace

GgufFile::GgufFile(const std::string& path) {
  install_ggml_hooks();
  file_ = std::make_unique<InputFile>(path);  // IO_ERROR when missing or unreadable
  char magic[4] = {0, 0, 0, 0};
  check(file_->size() >= 24, ErrorCode::InvalidModel,
        format("%s is not a GGUF file (%llu bytes, too short for a header)", path.c_str(),
               static_cast<unsigned long long>(file_->size())));
  file_->read_at(0, magic, 4, "the GGUF magic");
  check(std::memcmp(magic, "GGUF", 4) == 0, ErrorCode::InvalidModel, format("%s is not a GGUF file (bad magic)", path.c_str()));

  // no_alloc: only metadata and a tensor table (with shapes) are read, never the data.
  ggml_context* meta_ctx = nullptr;
  gguf_init_params params{/*no_alloc=*/true, &meta_ctx};
  std::unique_ptr<gguf_context, GgufDeleter> ctx(gguf_init_from_file(path.c_str(), params));
  check(ctx != nullptr && meta_ctx != nullptr, ErrorCode::InvalidModel,
        format("%s is a corrupt or unsupported GGUF file (its header could not be parsed)", path.c_str()));
  std::unique_ptr<ggml_context, void (*)(ggml_context*)> meta_owner(meta_ctx, ggml_free);

  for (int64_t id = 0; id < gguf_get_n_kv(ctx.get()); ++id) {
    meta_[gguf_get_key(ctx.get(), id)] = convert_value(ctx.get(), id);
  }
  const uint64_t data_offset = gguf_get_data_offset(ctx.get());
  for (int64_t id = 0; id < gguf_get_n_tensors(ctx.get()); ++id) {
    GgufTensorInfo info;
    info.name = gguf_get_tensor_name(ctx.get(), id);
    info.type = gguf_get_tensor_type(ctx.get(), id);
    info.offset = data_offset + gguf_get_tensor_offset(ctx.get(), id);
    info.nbytes = gguf_get_tensor_size(ctx.get(), id);
    const ggml_tensor* t = ggml_get_tensor(meta_ctx, info.name.c_str());
    check(t != nullptr, ErrorCode::InvalidModel, format("%s: tensor %s has no shape", path.c_str(), info.name.c_str()));
    info.n_dims = ggml_n_dims(t);
    for (int d = 0; d < GGML_MAX_DIMS; ++d) info.ne[d] = t->ne[d];
    tensors_.push_back(info);
  }
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const auto& info = tensors_[i];
    check(info.offset <= file_->size() && info.nbytes <= file_->size() - info.offset, ErrorCode::InvalidModel,
          format("%s is truncated: tensor %s needs bytes %llu..%llu but the file has %llu bytes", path.c_str(),
                 info.name.c_str(), static_cast<unsigned long long>(info.offset),
                 static_cast<unsigned long long>(info.offset + info.nbytes),
                 static_cast<unsigned long long>(file_->size())));
    by_name_[info.name] = i;
  }
}

const GgufValue& GgufFile::require(const std::string& key, const char* expected) const {
  auto it = meta_.find(key);
  check(it != meta_.end(), ErrorCode::InvalidModel,
        format("%s: metadata key %s (%s) is missing", path().c_str(), key.c_str(), expected));
  return it->second;
}

uint64_t GgufFile::get_uint(const std::string& key) const {
  const GgufValue& v = require(key, "an unsigned integer");
  if (v.kind == GgufValue::Kind::UInt) return v.u;
  check(v.kind == GgufValue::Kind::Int && v.i >= 0, ErrorCode::InvalidModel,
        format("%s: metadata key %s must be an unsigned integer, found %s", path().c_str(), key.c_str(), kind_name(v.kind)));
  return static_cast<uint64_t>(v.i);
}

double GgufFile::get_float(const std::string& key) const {
  const GgufValue& v = require(key, "a float");
  if (v.kind == GgufValue::Kind::Float) return v.f;
  if (v.kind == GgufValue::Kind::UInt) return static_cast<double>(v.u);
  check(v.kind == GgufValue::Kind::Int, ErrorCode::InvalidModel,
        format("%s: metadata key %s must be a number, found %s", path().c_str(), key.c_str(), kind_name(v.kind)));
  return static_cast<double>(v.i);
}

bool GgufFile::get_bool(const std::string& key) const {
  const GgufValue& v = require(key, "a bool");
  check(v.kind == GgufValue::Kind::Bool, ErrorCode::InvalidModel,
        format("%s: metadata key %s must be a bool, found %s", path().c_str(), key.c_str(), kind_name(v.kind)));
  return v.b;
}

std::string GgufFile::get_string(const std::string& key) const {
  const GgufValue& v = require(key, "a string");
  check(v.kind == GgufValue::Kind::Str, ErrorCode::InvalidModel,
        format("%s: metadata key %s must be a string, found %s", path().c_str(), key.c_str(), kind_name(v.kind)));
  return v.s;
}

std::vector<std::string> GgufFile::get_strings(const std::string& key) const {
  const GgufValue& v = require(key, "a string array");
  check(v.kind == GgufValue::Kind::StrArray, ErrorCode::InvalidModel,
        format("%s: metadata key %s must be a string array", path().c_str(), key.c_str()));
  return v.strs;
}

std::vector<int64_t> GgufFile::get_ints(const std::string& key) const {
  const GgufValue& v = require(key, "an integer array");
  check(v.kind == GgufValue::Kind::IntArray || v.kind == GgufValue::Kind::UIntArray, ErrorCode::InvalidModel,
        format("%s: metadata key %s must be an integer array", path().c_str(), key.c_str()));
  return v.ints;
}

std::vector<double> GgufFile::get_floats(const std::string& key) const {
  const GgufValue& v = require(key, "a float array");
  check(v.kind == GgufValue::Kind::FloatArray, ErrorCode::InvalidModel,
        format("%s: metadata key %s must be a float array", path().c_str(), key.c_str()));
  return v.floats;
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

void GgufFile::read_raw(const GgufTensorInfo& info, void* dst) {
  file_->read_at(info.offset, dst, info.nbytes, "tensor " + info.name);
}

std::vector<float> GgufFile::read_f32(const GgufTensorInfo& info) {
  std::vector<uint8_t> raw(info.nbytes);
  read_raw(info, raw.data());
  std::vector<float> out(static_cast<size_t>(info.nelements()));
  if (info.type == GGML_TYPE_F32) {
    std::memcpy(out.data(), raw.data(), out.size() * sizeof(float));
    return out;
  }
  const ggml_type_traits* traits = ggml_get_type_traits(info.type);
  check(traits != nullptr && traits->to_float != nullptr, ErrorCode::UnsupportedModel,
        format("%s: tensor %s has type %s, which cannot be converted to f32", path().c_str(), info.name.c_str(),
               ggml_type_name(info.type)));
  check(ggml_validate_row_data(info.type, raw.data(), raw.size()), ErrorCode::InvalidModel,
        format("%s: tensor %s holds invalid %s data (NaN/Inf scales?)", path().c_str(), info.name.c_str(),
               ggml_type_name(info.type)));
  traits->to_float(raw.data(), out.data(), info.nelements());
  return out;
}

}  // namespace vl3
