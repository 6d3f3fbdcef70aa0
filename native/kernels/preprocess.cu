// GPU twin of media::resize_bicubic + media::patchify (the "patch embedding" input): the same
// fixed-point taps of either filter (media::resample_taps, built on the host), the same pass order
// (media::resize_plan), integer accumulation and uint8 intermediates, and the host-built
// normalization table, so the result is bit-identical to the CPU path.
#include <cuda_runtime.h>

#include <memory>
#include <vector>

#include "kernels/cuda_util.cuh"
#include "kernels/kernels.h"

namespace vl3::kernels {
namespace {

constexpr int kThreads = 256;

/** One axis' taps on the device. */
struct DeviceTaps {
  int ksize;
  int precision;
  DeviceBuffer<int> first;
  DeviceBuffer<int> count;
  DeviceBuffer<int32_t> weights;

  explicit DeviceTaps(const media::ResampleTaps& t)
      : ksize(t.ksize),
        precision(t.precision),
        first(t.first.data(), t.first.size(), "preprocess_cuda: upload taps"),
        count(t.count.data(), t.count.size(), "preprocess_cuda: upload taps"),
        weights(t.weights.data(), t.weights.size(), "preprocess_cuda: upload taps") {}
};

__device__ inline uint8_t clip8(int32_t acc, int precision) {
  const int32_t v = acc >> precision;  // arithmetic shift, as the CPU path
  return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

// One thread per output pixel (3 channels): src is in_w x h, dst out_w x h, RGB interleaved.
__global__ void resample_horizontal(const uint8_t* src, int in_w, int h, uint8_t* dst, int out_w, const int* first,
                                    const int* count, const int32_t* weights, int ksize, int precision) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= static_cast<int64_t>(out_w) * h) return;
  const int y = static_cast<int>(i / out_w), x = static_cast<int>(i % out_w);
  const int32_t* k = weights + static_cast<int64_t>(x) * ksize;
  const uint8_t* p = src + (static_cast<int64_t>(y) * in_w + first[x]) * 3;
  int32_t r = 1 << (precision - 1), g = r, b = r;
  for (int j = 0; j < count[x]; ++j, p += 3) {
    r += p[0] * k[j];
    g += p[1] * k[j];
    b += p[2] * k[j];
  }
  uint8_t* o = dst + i * 3;
  o[0] = clip8(r, precision);
  o[1] = clip8(g, precision);
  o[2] = clip8(b, precision);
}

// One thread per output byte: src is w x in_h, dst w x out_h (stride = w * 3 bytes).
__global__ void resample_vertical(const uint8_t* src, int64_t stride, uint8_t* dst, int out_h, const int* first,
                                  const int* count, const int32_t* weights, int ksize, int precision) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= stride * out_h) return;
  const int y = static_cast<int>(i / stride);
  const int64_t col = i % stride;
  const int32_t* k = weights + static_cast<int64_t>(y) * ksize;
  int32_t acc = 1 << (precision - 1);
  for (int j = 0; j < count[y]; ++j) acc += src[static_cast<int64_t>(first[y] + j) * stride + col] * k[j];
  dst[i] = clip8(acc, precision);
}

// One thread per output float. Row r of the output is patch (pr, pc) in merge-block order
// (r = ((bi * bw + bj) * merge + ii) * merge + jj); within a row the order is (c, y, x).
__global__ void patchify(const uint8_t* img, int width, int grid_w, int patch, int merge, const float* table,
                         float* out, int64_t total) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const int64_t row_len = 3LL * patch * patch;
  const int64_t r = i / row_len;
  const int rem = static_cast<int>(i % row_len);
  const int c = rem / (patch * patch), y = (rem / patch) % patch, x = rem % patch;
  const int jj = static_cast<int>(r % merge), ii = static_cast<int>((r / merge) % merge);
  const int64_t block = r / (static_cast<int64_t>(merge) * merge);
  const int bw = grid_w / merge;
  const int bj = static_cast<int>(block % bw), bi = static_cast<int>(block / bw);
  const int64_t py = static_cast<int64_t>(bi * merge + ii) * patch + y;
  const int64_t px = static_cast<int64_t>(bj * merge + jj) * patch + x;
  out[i] = table[c * 256 + img[(py * width + px) * 3 + c]];
}

/** Runs one resize pass on the device; returns the new image buffer. */
DeviceBuffer<uint8_t>* pass(const DeviceBuffer<uint8_t>& src, int w, int h, int out_w, int out_h, bool horizontal,
                            media::ResizeFilter filter, std::vector<std::unique_ptr<DeviceBuffer<uint8_t>>>& keep) {
  const int64_t n = static_cast<int64_t>(out_w) * out_h * 3;
  keep.push_back(std::make_unique<DeviceBuffer<uint8_t>>(static_cast<size_t>(n), "preprocess_cuda: intermediate"));
  DeviceBuffer<uint8_t>& dst = *keep.back();
  if (horizontal) {
    DeviceTaps t(media::resample_taps(w, out_w, filter));
    resample_horizontal<<<grid_for(static_cast<int64_t>(out_w) * h, kThreads), kThreads, 0, stream()>>>(
        src.get(), w, h, dst.get(), out_w, t.first.get(), t.count.get(), t.weights.get(), t.ksize, t.precision);
    cuda_finish("preprocess_cuda: horizontal pass");
  } else {
    DeviceTaps t(media::resample_taps(h, out_h, filter));
    resample_vertical<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(src.get(), static_cast<int64_t>(w) * 3, dst.get(), out_h,
                                                           t.first.get(), t.count.get(), t.weights.get(), t.ksize,
                                                           t.precision);
    cuda_finish("preprocess_cuda: vertical pass");
  }
  return &dst;
}

}  // namespace

void preprocess_cuda(const media::RgbImage& src, int out_w, int out_h, media::ResizeFilter filter, int patch, int merge,
                     const float mean[3], const float std[3], float* out, media::RgbImage* resized) {
  media::check_resize(src, out_w, out_h);
  media::check_patchify(out_w, out_h, patch, merge);
  const std::string why = cuda_unavailable_reason();
  check(why.empty(), ErrorCode::DeviceUnavailable, "preprocess_cuda: " + why);

  std::vector<std::unique_ptr<DeviceBuffer<uint8_t>>> buffers;
  buffers.push_back(std::make_unique<DeviceBuffer<uint8_t>>(src.data.data(), src.data.size(), "preprocess_cuda: upload"));
  const DeviceBuffer<uint8_t>* img = buffers.back().get();
  const media::ResizePlan plan = media::resize_plan(src.width, src.height, out_w, out_h, filter);
  if (plan.vertical_first) {
    img = pass(*img, src.width, src.height, src.width, out_h, false, filter, buffers);
    if (plan.horizontal) img = pass(*img, src.width, out_h, out_w, out_h, true, filter, buffers);
  } else {
    if (plan.horizontal) img = pass(*img, src.width, src.height, out_w, src.height, true, filter, buffers);
    if (plan.vertical) img = pass(*img, out_w, src.height, out_w, out_h, false, filter, buffers);
  }

  float table[3 * 256];
  media::normalize_table(mean, std, table);
  DeviceBuffer<float> d_table(table, 3 * 256, "preprocess_cuda: upload table");
  const int grid_h = out_h / patch, grid_w = out_w / patch;
  const int64_t total = static_cast<int64_t>(grid_h) * grid_w * 3 * patch * patch;
  DeviceBuffer<float> d_out(static_cast<size_t>(total), "preprocess_cuda: output");
  patchify<<<grid_for(total, kThreads), kThreads, 0, stream()>>>(img->get(), out_w, grid_w, patch, merge, d_table.get(),
                                                    d_out.get(), total);
  cuda_finish("preprocess_cuda: patchify");
  d_out.copy_to(out, "preprocess_cuda: download");
  if (resized != nullptr) {
    resized->width = out_w;
    resized->height = out_h;
    resized->data.resize(static_cast<size_t>(out_w) * out_h * 3);
    img->copy_to(resized->data.data(), "preprocess_cuda: download");
  }
}

}  // namespace vl3::kernels
