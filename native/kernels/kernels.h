// Our CUDA kernels and their CPU references (the "patch embedding", "token merging" and
// m×m merge kernels). Plain C++ interface: no CUDA headers here, so the core, the addon and the
// tests include it in any build. In a build without CUDA (no_cuda.cpp) every *_cuda function
// throws DeviceUnavailable and cuda_unavailable_reason() says why.
//
//   kernel (file)                    CPU reference                      contract
//   preprocess_cuda (preprocess.cu)  media::resize_bicubic + patchify   bit-exact, both filters (integer resampling,
//                                                                      host-built normalization table)
//   keep_mask_cuda (keep_mask.cu)    media::keep_mask                   bit-exact (integer sums, the
//                                                                      same media::PruneRule on them)
//   merge_tokens_cuda (merge.cu)     merge_tokens_cpu (merge.cpp)       within 1 float32 ulp per value
//
// Host-to-host launchers: they upload their inputs, run on the current CUDA device and copy the
// result back, synchronously. Argument errors are InvalidArgument (the CPU path's checks), a missing
// device or a CUDA failure DeviceUnavailable, a failed device allocation OutOfMemory.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "media/image.h"

namespace vl3::kernels {

/** Empty when the CUDA kernels can run in this process; otherwise why they cannot. */
std::string cuda_unavailable_reason();

/**
 * GPU twin of `media::resize_bicubic(src, out_w, out_h, filter)` followed by `media::patchify`: writes
 * (out_h/patch)*(out_w/patch) rows of 3*patch*patch floats to `out` (host memory), rows in
 * merge-block order, and, when `resized` is not null, the resized RGB image. Same argument checks
 * as the CPU path.
 */
void preprocess_cuda(const media::RgbImage& src, int out_w, int out_h, media::ResizeFilter filter, int patch, int merge,
                     const float mean[3], const float std[3], float* out, media::RgbImage* resized = nullptr);

/** GPU twin of `media::keep_mask` (same arguments, same result). */
std::vector<uint8_t> keep_mask_cuda(const media::RgbImage& prev, const media::RgbImage& cur, int patch, int merge,
                                    float threshold, const float mean[3], const float std[3]);

/**
 * CPU reference of the m×m merge: `x` holds `rows` tokens of `dim` floats in merge-block order
 * (each group of m*m consecutive rows is one m×m block); `out` gets rows/(m*m) tokens, each the
 * mean of its group, summed in row order in float32 and scaled by 1/(m*m). Throws InvalidArgument
 * when rows is not a multiple of m*m or a size is not positive.
 */
void merge_tokens_cpu(const float* x, int64_t rows, int64_t dim, int m, float* out);

/** GPU twin of merge_tokens_cpu, host memory in and out. */
void merge_tokens_cuda(const float* x, int64_t rows, int64_t dim, int m, float* out);

}  // namespace vl3::kernels
