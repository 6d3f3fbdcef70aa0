#include "convert/quantize.h"

#include <cstring>

namespace vl3::convert {

size_t source_dtype_size(SourceDtype dtype) {
  return dtype == SourceDtype::F32 ? 4 : 2;
}

bool parse_ggml_type(const std::string& name, ggml_type* out) {
  for (int t = 0; t < GGML_TYPE_COUNT; ++t) {
    const char* tn = ggml_type_name(static_cast<ggml_type>(t));
    if (tn != nullptr && name == tn && ggml_type_size(static_cast<ggml_type>(t)) > 0) {
      *out = static_cast<ggml_type>(t);
      return true;
    }
  }
  return false;
}

size_t encoded_size(ggml_type type, int64_t nrows, int64_t n_per_row) {
  return static_cast<size_t>(nrows) * ggml_row_size(type, n_per_row);
}

void source_to_f32(SourceDtype dtype, const void* src, float* dst, int64_t n) {
  switch (dtype) {
    case SourceDtype::F32: std::memcpy(dst, src, static_cast<size_t>(n) * 4); break;
    case SourceDtype::F16: ggml_fp16_to_fp32_row(static_cast<const ggml_fp16_t*>(src), dst, n); break;
    case SourceDtype::BF16: ggml_bf16_to_fp32_row(static_cast<const ggml_bf16_t*>(src), dst, n); break;
  }
}

size_t encode_rows(ggml_type type, SourceDtype src_dtype, const void* src_raw, const float* f32,
                   void* dst, int64_t nrows, int64_t n_per_row) {
  const int64_t n = nrows * n_per_row;
  switch (type) {
    case GGML_TYPE_F32:
      std::memcpy(dst, f32, static_cast<size_t>(n) * 4);
      return static_cast<size_t>(n) * 4;
    case GGML_TYPE_F16:
      if (src_dtype == SourceDtype::F16) std::memcpy(dst, src_raw, static_cast<size_t>(n) * 2);
      else ggml_fp32_to_fp16_row(f32, static_cast<ggml_fp16_t*>(dst), n);
      return static_cast<size_t>(n) * 2;
    case GGML_TYPE_BF16:
      if (src_dtype == SourceDtype::BF16) std::memcpy(dst, src_raw, static_cast<size_t>(n) * 2);
      else ggml_fp32_to_bf16_row_ref(f32, static_cast<ggml_bf16_t*>(dst), n);
      return static_cast<size_t>(n) * 2;
    default:
      return ggml_quantize_chunk(type, f32, dst, 0, nrows, n_per_row, nullptr);
  }
}

}  // namespace vl3::convert
