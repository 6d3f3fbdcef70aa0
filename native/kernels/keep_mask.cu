// GPU twin of media::keep_mask (the "token merging" kernel of differential frame pruning): one
// thread block per merged token sums |cur - prev| per channel over the token's (patch*merge)^2
// pixels in 64-bit integers; the host applies the same media::PruneRule to the sums, so the mask
// is identical to the CPU path's.
#include <cuda_runtime.h>

#include <vector>

#include "kernels/cuda_util.cuh"
#include "kernels/kernels.h"
#include "media/video.h"

namespace vl3::kernels {
namespace {

constexpr int kThreads = 256;

__global__ void token_abs_diff_sums(const uint8_t* cur, const uint8_t* prev, int width, int block, int bw,
                                    long long* sums) {
  __shared__ long long part[3][kThreads];
  const int token = blockIdx.x;
  const int bi = token / bw, bj = token % bw;
  long long s[3] = {0, 0, 0};
  for (int k = threadIdx.x; k < block * block; k += blockDim.x) {
    const int64_t y = static_cast<int64_t>(bi) * block + k / block;
    const int64_t x = static_cast<int64_t>(bj) * block + k % block;
    const int64_t o = (y * width + x) * 3;
    for (int c = 0; c < 3; ++c) s[c] += abs(static_cast<int>(cur[o + c]) - static_cast<int>(prev[o + c]));
  }
  for (int c = 0; c < 3; ++c) part[c][threadIdx.x] = s[c];
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (static_cast<int>(threadIdx.x) < stride) {
      for (int c = 0; c < 3; ++c) part[c][threadIdx.x] += part[c][threadIdx.x + stride];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    for (int c = 0; c < 3; ++c) sums[static_cast<int64_t>(token) * 3 + c] = part[c][0];
  }
}

}  // namespace

std::vector<uint8_t> keep_mask_cuda(const media::RgbImage& prev, const media::RgbImage& cur, int patch, int merge,
                                    float threshold, const float mean[3], const float std[3]) {
  media::check_keep_mask(prev, cur, patch, merge, threshold, mean, std);
  const std::string why = cuda_unavailable_reason();
  check(why.empty(), ErrorCode::DeviceUnavailable, "keep_mask_cuda: " + why);
  const media::PruneRule rule(patch, merge, threshold, std);
  const int block = patch * merge, bh = cur.height / block, bw = cur.width / block;
  const size_t tokens = static_cast<size_t>(bh) * bw;
  std::vector<uint8_t> keep(tokens, 1);
  if (rule.disabled) return keep;

  DeviceBuffer<uint8_t> d_cur(cur.data.data(), cur.data.size(), "keep_mask_cuda: upload");
  DeviceBuffer<uint8_t> d_prev(prev.data.data(), prev.data.size(), "keep_mask_cuda: upload");
  DeviceBuffer<long long> d_sums(tokens * 3, "keep_mask_cuda: sums");
  token_abs_diff_sums<<<static_cast<unsigned int>(tokens), kThreads, 0, stream()>>>(d_cur.get(), d_prev.get(), cur.width, block, bw,
                                                                      d_sums.get());
  cuda_finish("keep_mask_cuda");
  std::vector<long long> sums(tokens * 3);
  d_sums.copy_to(sums.data(), "keep_mask_cuda: download");

  int kept = 0;
  for (size_t t = 0; t < tokens; ++t) {
    const int64_t s[3] = {sums[t * 3], sums[t * 3 + 1], sums[t * 3 + 2]};
    keep[t] = rule.keep(s) ? 1 : 0;
    kept += keep[t];
  }
  if (kept == 0 && !keep.empty()) keep[0] = 1;  // min_tokens = 1, as the CPU path
  return keep;
}

}  // namespace vl3::kernels
