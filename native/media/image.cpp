// Image preprocessing (see image.h). The resampler follows the algorithm of Pillow's
// libImaging/Resample.c (read to learn it; this is an independent implementation):
//
//   per axis, for output index i:  center = (i + 0.5) * scale,   scale = in / out
//                                  filterscale = max(scale, 1)   (antialias when shrinking)
//                                  support = 2 * filterscale     (bicubic radius 2)
//     taps j in [xmin, xmin + n):  xmin = int(center - support + 0.5) clamped to >= 0,
//                                  xmax = int(center + support + 0.5) clamped to <= in
//     weight(j) = cubic((j - center + 0.5) * (1 / filterscale)), normalized by their sum,
//     then fixed point: int(w * 2^22 +/- 0.5) (rounded away from zero).
//   out = clamp((2^21 + sum(pixel * weight)) >> 22, 0, 255), accumulated in int32.
//
// Pillow resizes horizontally first into a uint8 image, then vertically; a pass whose size does
// not change is skipped, and an unchanged size is a plain copy. In Pillow 12.3 an image more
// than 100x taller than wide that shrinks vertically is resized vertically first (Image.resize).
//
// ResizeFilter::TorchVision is torchvision's `resize(uint8 tensor, BICUBIC, antialias=True)` on a
// CPU with AVX2 (PyTorch's uint8 path, itself modelled on Pillow-SIMD; checked bit-exact against
// torch 2.13 on random and video frames): the same taps and passes (always horizontal first) but
// the cubic's second piece written ((a*x - 5a)*x + 8a)*x - 4a, the scale in double without the
// float32 box, and int16 weights: precision p is the largest p < 22 with
// int(0.5 + max_weight * 2^(p+1)) < 2^15 (per axis), weights int(w * 2^p +/- 0.5), and
// out = clamp((2^(p-1) + sum) >> p, 0, 255). (Non-AVX2 CPUs take a float path there instead.)
//
// Floating point: the filter polynomial must not be contracted into FMAs (Pillow's x86-64
// wheels have none), so contraction is off for this file.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#elif defined(_MSC_VER)
#pragma fp_contract(off)
#endif

#include "media/image.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "common/status.h"

namespace vl3::media {
namespace {

constexpr int64_t kMaxSide = 1 << 24;        // sides must stay exact in float32 (Pillow's box)
constexpr int64_t kMaxPixels = int64_t(1) << 31;

// Python's round() on a double: to nearest, ties to even. Independent of the FP rounding mode.
double round_half_even(double x) {
  double r = std::floor(x);
  const double frac = x - r;  // exact
  if (frac > 0.5 || (frac == 0.5 && std::fmod(r, 2.0) != 0.0)) r += 1.0;
  return r;
}

// Keys cubic convolution kernel with a = -0.5, written as Pillow (or PyTorch) evaluates it.
double cubic(double x, ResizeFilter filter) {
  const double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) {
    return filter == ResizeFilter::Pillow ? (((x - 5) * x + 8) * x - 4) * a : ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
  }
  return 0.0;
}

inline uint8_t clip8(int32_t acc, int precision) {
  const int32_t v = acc >> precision;  // arithmetic shift: floor, as Pillow's table lookup
  return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

RgbImage resample_horizontal(const RgbImage& src, int out_w, ResizeFilter filter) {
  const ResampleTaps t = resample_taps(src.width, out_w, filter);
  RgbImage out;
  out.width = out_w;
  out.height = src.height;
  out.data.resize(static_cast<size_t>(out_w) * src.height * 3);
  for (int y = 0; y < src.height; ++y) {
    const uint8_t* row = &src.data[static_cast<size_t>(y) * src.width * 3];
    uint8_t* dst = &out.data[static_cast<size_t>(y) * out_w * 3];
    for (int x = 0; x < out_w; ++x) {
      const int32_t* k = &t.weights[static_cast<size_t>(x) * t.ksize];
      const uint8_t* p = row + static_cast<size_t>(t.first[x]) * 3;
      int32_t r = 1 << (t.precision - 1), g = r, b = r;
      for (int j = 0; j < t.count[x]; ++j, p += 3) {
        r += p[0] * k[j];
        g += p[1] * k[j];
        b += p[2] * k[j];
      }
      dst[x * 3 + 0] = clip8(r, t.precision);
      dst[x * 3 + 1] = clip8(g, t.precision);
      dst[x * 3 + 2] = clip8(b, t.precision);
    }
  }
  return out;
}

RgbImage resample_vertical(const RgbImage& src, int out_h, ResizeFilter filter) {
  const ResampleTaps t = resample_taps(src.height, out_h, filter);
  const size_t stride = static_cast<size_t>(src.width) * 3;
  RgbImage out;
  out.width = src.width;
  out.height = out_h;
  out.data.resize(stride * out_h);
  std::vector<int32_t> acc(stride);
  for (int y = 0; y < out_h; ++y) {
    // Sum whole rows at a time (integer sums: the order does not change the result).
    std::fill(acc.begin(), acc.end(), 1 << (t.precision - 1));
    const int32_t* k = &t.weights[static_cast<size_t>(y) * t.ksize];
    for (int j = 0; j < t.count[y]; ++j) {
      const uint8_t* row = &src.data[static_cast<size_t>(t.first[y] + j) * stride];
      const int32_t kj = k[j];
      for (size_t i = 0; i < stride; ++i) acc[i] += row[i] * kj;
    }
    uint8_t* dst = &out.data[static_cast<size_t>(y) * stride];
    for (size_t i = 0; i < stride; ++i) dst[i] = clip8(acc[i], t.precision);
  }
  return out;
}

}  // namespace

void check_image(const RgbImage& img, const char* what) {
  check(img.width > 0 && img.height > 0, ErrorCode::InvalidArgument,
        format("%s: image is empty (%dx%d pixels)", what, img.width, img.height));
  check(img.width <= kMaxSide && img.height <= kMaxSide, ErrorCode::InvalidArgument,
        format("%s: image of %dx%d pixels is too large (at most %lld pixels per side)", what, img.width, img.height,
               static_cast<long long>(kMaxSide)));
  const size_t expected = static_cast<size_t>(img.width) * static_cast<size_t>(img.height) * 3;
  check(img.data.size() == expected, ErrorCode::InvalidArgument,
        format("%s: RGB data of a %dx%d image must be %zu bytes, got %zu", what, img.width, img.height, expected,
               img.data.size()));
}

ResampleTaps resample_taps(int in_size, int out_size, ResizeFilter filter) {
  const bool pillow = filter == ResizeFilter::Pillow;
  // Pillow passes the box edges as float32 and computes (in1 - in0) / out in double.
  const double scale = pillow ? static_cast<double>(static_cast<float>(in_size) - 0.0f) / out_size
                              : static_cast<double>(in_size) / out_size;
  const double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = 2.0 * filterscale;
  const double inv = 1.0 / filterscale;

  ResampleTaps t;
  t.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  t.first.resize(static_cast<size_t>(out_size));
  t.count.resize(static_cast<size_t>(out_size));
  t.weights.assign(static_cast<size_t>(out_size) * static_cast<size_t>(t.ksize), 0);
  std::vector<double> w(static_cast<size_t>(out_size) * static_cast<size_t>(t.ksize), 0.0);

  double w_max = 0.0;
  for (int i = 0; i < out_size; ++i) {
    const double center = 0.0 + (i + 0.5) * scale;
    int lo = static_cast<int>(center - support + 0.5);
    if (lo < 0) lo = 0;
    int hi = static_cast<int>(center + support + 0.5);
    if (hi > in_size) hi = in_size;
    const int n = hi - lo;
    double* wi = &w[static_cast<size_t>(i) * t.ksize];
    double sum = 0.0;
    for (int j = 0; j < n; ++j) {
      wi[j] = cubic((j + lo - center + 0.5) * inv, filter);
      sum += wi[j];
    }
    for (int j = 0; j < n; ++j) {
      if (sum != 0.0) wi[j] /= sum;
      w_max = std::max(w_max, wi[j]);
    }
    t.first[i] = lo;
    t.count[i] = n;
  }
  t.precision = kResamplePrecisionBits;
  if (!pillow) {  // the largest precision whose weights fit int16 (PyTorch's uint8 path)
    for (t.precision = 0; t.precision < kResamplePrecisionBits; ++t.precision) {
      if (static_cast<int>(0.5 + w_max * static_cast<double>(1 << (t.precision + 1))) >= (1 << 15)) break;
    }
  }
  const double unit = static_cast<double>(1 << t.precision);
  for (size_t k = 0; k < w.size(); ++k) {
    const double scaled = w[k] * unit;
    t.weights[k] = static_cast<int32_t>(w[k] < 0 ? -0.5 + scaled : 0.5 + scaled);
  }
  return t;
}

ResizePlan resize_plan(int in_w, int in_h, int out_w, int out_h, ResizeFilter filter) {
  ResizePlan p;
  p.horizontal = out_w != in_w;
  p.vertical = out_h != in_h;
  // Image.resize: very tall images that shrink vertically go through the vertical pass first.
  p.vertical_first = filter == ResizeFilter::Pillow && static_cast<int64_t>(in_h) > static_cast<int64_t>(in_w) * 100 &&
                     p.vertical && out_h < in_h;
  return p;
}

void check_resize(const RgbImage& src, int out_w, int out_h) {
  check_image(src, "resize_bicubic");
  check(out_w > 0 && out_h > 0 && out_w <= kMaxSide && out_h <= kMaxSide &&
            static_cast<int64_t>(out_w) * out_h <= kMaxPixels,
        ErrorCode::InvalidArgument,
        format("resize_bicubic: output size %dx%d must be positive and at most %lld pixels", out_w, out_h,
               static_cast<long long>(kMaxPixels)));
}

void check_patchify(int width, int height, int patch, int merge) {
  check(patch > 0 && merge > 0, ErrorCode::InvalidArgument,
        format("patchify: patch (%d) and merge (%d) must be positive", patch, merge));
  const int block = patch * merge;
  check(width % block == 0 && height % block == 0, ErrorCode::InvalidArgument,
        format("patchify: image of %dx%d pixels is not a multiple of patch * merge = %d", width, height, block));
}

void normalize_table(const float mean[3], const float std[3], float lut[3 * 256]) {
  // The reference rescales in float64 then rounds to float32, and normalizes in float32.
  const double rescale = 1.0 / 255.0;
  for (int c = 0; c < 3; ++c) {
    for (int p = 0; p < 256; ++p) {
      const float x = static_cast<float>(p * rescale);
      lut[c * 256 + p] = (x - mean[c]) / std[c];
    }
  }
}

ImageSize smart_resize(int64_t height, int64_t width, int factor, int64_t min_pixels, int64_t max_pixels) {
  check(height > 0 && width > 0 && height <= kMaxSide && width <= kMaxSide, ErrorCode::InvalidArgument,
        format("smart_resize: image size %lldx%lld must be positive and at most %lld per side",
               static_cast<long long>(width), static_cast<long long>(height), static_cast<long long>(kMaxSide)));
  check(factor > 0, ErrorCode::InvalidArgument, format("smart_resize: factor must be positive, got %d", factor));
  check(min_pixels >= 0 && max_pixels > 0, ErrorCode::InvalidArgument,
        format("smart_resize: need min_pixels >= 0 and max_pixels > 0, got %lld and %lld",
               static_cast<long long>(min_pixels), static_cast<long long>(max_pixels)));

  const double ratio = static_cast<double>(std::max(height, width)) / static_cast<double>(std::min(height, width));
  check(!(ratio > 200), ErrorCode::InvalidArgument,
        format("Image aspect ratio %.6g:1 (%lldx%lld pixels) exceeds the supported maximum of 200:1", ratio,
               static_cast<long long>(width), static_cast<long long>(height)));

  const double h = static_cast<double>(height), w = static_cast<double>(width), f = factor;
  int64_t hb = static_cast<int64_t>(round_half_even(h / f)) * factor;
  int64_t wb = static_cast<int64_t>(round_half_even(w / f)) * factor;
  if (hb * wb > max_pixels) {
    const double beta = std::sqrt(static_cast<double>(height * width) / static_cast<double>(max_pixels));
    hb = std::max<int64_t>(factor, static_cast<int64_t>(std::floor(h / beta / f)) * factor);
    wb = std::max<int64_t>(factor, static_cast<int64_t>(std::floor(w / beta / f)) * factor);
  } else if (hb * wb < min_pixels) {
    const double beta = std::sqrt(static_cast<double>(min_pixels) / static_cast<double>(height * width));
    hb = static_cast<int64_t>(std::ceil(h * beta / f)) * factor;
    wb = static_cast<int64_t>(std::ceil(w * beta / f)) * factor;
  }
  check(hb <= kMaxSide && wb <= kMaxSide, ErrorCode::InvalidArgument,
        format("smart_resize: target size %lldx%lld is too large (min_pixels %lld)", static_cast<long long>(wb),
               static_cast<long long>(hb), static_cast<long long>(min_pixels)));
  return ImageSize{static_cast<int>(hb), static_cast<int>(wb)};
}

RgbImage resize_bicubic(const RgbImage& src, int out_w, int out_h, ResizeFilter filter) {
  check_resize(src, out_w, out_h);
  const ResizePlan plan = resize_plan(src.width, src.height, out_w, out_h, filter);
  if (!plan.horizontal && !plan.vertical) return src;
  if (plan.vertical_first) {
    RgbImage tmp = resample_vertical(src, out_h, filter);
    return plan.horizontal ? resample_horizontal(tmp, out_w, filter) : tmp;
  }
  if (!plan.horizontal) return resample_vertical(src, out_h, filter);
  RgbImage tmp = resample_horizontal(src, out_w, filter);
  return plan.vertical ? resample_vertical(tmp, out_h, filter) : tmp;
}

void patchify(const RgbImage& img, int patch, int merge, const float mean[3], const float std[3], float* out) {
  check_image(img, "patchify");
  check_patchify(img.width, img.height, patch, merge);
  float table[3 * 256];
  normalize_table(mean, std, table);
  const float(*lut)[256] = reinterpret_cast<const float(*)[256]>(table);

  const int grid_h = img.height / patch, grid_w = img.width / patch;
  const size_t stride = static_cast<size_t>(img.width) * 3;
  float* o = out;
  for (int bi = 0; bi < grid_h / merge; ++bi) {
    for (int bj = 0; bj < grid_w / merge; ++bj) {
      for (int ii = 0; ii < merge; ++ii) {
        for (int jj = 0; jj < merge; ++jj) {
          const int pr = bi * merge + ii, pc = bj * merge + jj;
          for (int c = 0; c < 3; ++c) {
            for (int y = 0; y < patch; ++y) {
              const uint8_t* src = &img.data[(static_cast<size_t>(pr) * patch + y) * stride +
                                             static_cast<size_t>(pc) * patch * 3 + c];
              for (int x = 0; x < patch; ++x) *o++ = lut[c][src[x * 3]];
            }
          }
        }
      }
    }
  }
}

PreprocessedImage preprocess_image(const RgbImage& img, const ImageBudget& budget, PreprocessFn accel) {
  check_image(img, "preprocess_image");
  check(budget.patch_size > 0 && budget.merge_size > 0 && budget.patch_size <= 1024 && budget.merge_size <= 64,
        ErrorCode::InvalidArgument,
        format("preprocess_image: patch_size %d and merge_size %d must be positive (at most 1024 and 64)",
               budget.patch_size, budget.merge_size));
  const int factor = budget.patch_size * budget.merge_size;
  const ImageSize size = smart_resize(img.height, img.width, factor, budget.min_pixels, budget.max_pixels);
  check(size.height > 0 && size.width > 0, ErrorCode::InvalidArgument,
        format("Image of %dx%d pixels resizes to %dx%d with min_pixels %lld; min_pixels must be positive", img.width,
               img.height, size.width, size.height, static_cast<long long>(budget.min_pixels)));
  check(static_cast<int64_t>(size.height) * size.width <= kMaxPixels, ErrorCode::InvalidArgument,
        format("Image of %dx%d pixels resizes to %dx%d, over the limit of %lld pixels", img.width, img.height,
               size.width, size.height, static_cast<long long>(kMaxPixels)));

  PreprocessedImage out;
  out.resized_h = size.height;
  out.resized_w = size.width;
  out.grid_h = size.height / budget.patch_size;
  out.grid_w = size.width / budget.patch_size;
  out.pixels.resize(static_cast<size_t>(out.grid_h) * out.grid_w * 3 * budget.patch_size * budget.patch_size);
  if (accel != nullptr) {
    accel(img, size.width, size.height, ResizeFilter::Pillow, budget.patch_size, budget.merge_size, budget.mean, budget.std,
          out.pixels.data(), nullptr);
  } else {
    const RgbImage resized = resize_bicubic(img, size.width, size.height);
    patchify(resized, budget.patch_size, budget.merge_size, budget.mean, budget.std, out.pixels.data());
  }
  return out;
}

}  // namespace vl3::media
