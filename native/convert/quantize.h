// Tensor encoding for the converter: source rows (f32/f16/bf16 bytes) -> a ggml type.
// Quantization itself is ggml's (ggml_quantize_chunk); this file only validates and batches.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "ggml.h"

namespace vl3::convert {

/** Element types a checkpoint tensor may be stored in. */
enum class SourceDtype { F32, F16, BF16 };

size_t source_dtype_size(SourceDtype dtype);

/** Parses a ggml type name as the converter accepts it: f32, f16, bf16, q8_0, q4_k, q6_k, q5_0, q8_0... */
bool parse_ggml_type(const std::string& name, ggml_type* out);

/** Bytes of `nrows` rows of `n_per_row` elements in `type`. */
size_t encoded_size(ggml_type type, int64_t nrows, int64_t n_per_row);

/** Widens `n` source elements to f32. */
void source_to_f32(SourceDtype dtype, const void* src, float* dst, int64_t n);

/**
 * Encodes rows to `type`. `src_raw` (the untouched source bytes) lets bf16->bf16 and
 * f16->f16 stay bit-exact; `f32` holds the widened values (same rows). Returns bytes written.
 */
size_t encode_rows(ggml_type type, SourceDtype src_dtype, const void* src_raw, const float* f32,
                   void* dst, int64_t nrows, int64_t n_per_row);

}  // namespace vl3::convert
