// GPU twin of merge_tokens_cpu (merge.cpp): the m×m merge of tokens in merge-block order. Each
// thread owns one output value and adds its group's rows in the same order, with rounded
// (never fused) float32 operations, so the result equals the CPU reference.
#include <cuda_runtime.h>

#include "kernels/cuda_util.cuh"
#include "kernels/kernels.h"

namespace vl3::kernels {
namespace {

constexpr int kThreads = 256;

__global__ void merge_tokens(const float* x, int64_t tokens, int64_t dim, int64_t group, float scale, float* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= tokens * dim) return;
  const int64_t t = i / dim, d = i % dim;
  float sum = 0.0f;
  for (int64_t r = 0; r < group; ++r) sum = __fadd_rn(sum, x[(t * group + r) * dim + d]);
  out[i] = __fmul_rn(sum, scale);
}

}  // namespace

void merge_tokens_cuda(const float* x, int64_t rows, int64_t dim, int m, float* out) {
  check(rows > 0 && dim > 0 && m > 0 && rows % (static_cast<int64_t>(m) * m) == 0, ErrorCode::InvalidArgument,
        format("merge_tokens: %lld rows of %lld values do not split into %dx%d blocks", static_cast<long long>(rows),
               static_cast<long long>(dim), m, m));
  const std::string why = cuda_unavailable_reason();
  check(why.empty(), ErrorCode::DeviceUnavailable, "merge_tokens_cuda: " + why);
  const int64_t group = static_cast<int64_t>(m) * m, tokens = rows / group;
  DeviceBuffer<float> d_x(x, static_cast<size_t>(rows * dim), "merge_tokens_cuda: upload");
  DeviceBuffer<float> d_out(static_cast<size_t>(tokens * dim), "merge_tokens_cuda: output");
  merge_tokens<<<grid_for(tokens * dim, kThreads), kThreads, 0, stream()>>>(d_x.get(), tokens, dim, group,
                                                               1.0f / static_cast<float>(group), d_out.get());
  cuda_finish("merge_tokens_cuda");
  d_out.copy_to(out, "merge_tokens_cuda: download");
}

}  // namespace vl3::kernels
