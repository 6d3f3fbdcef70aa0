// Image preprocessing for the vision encoder: target size ("smart resize"), Pillow-exact bicubic
// resampling, rescale + normalize, and patchify into rows of `pixel_values` (spec §5.2-§5.4).
// Input is decoded 8-bit RGB (lib/media/image.ts does the decoding); no Node here.
//
// Reference: transformers 5.18 `VideoLlama3ImageProcessorPil` fed by `load_image` (Pillow 12.3).
// Every step below reproduces that reference bit for bit:
//   - smart_resize: Python arithmetic (round half to even, double quotients, `else if`).
//   - resize_bicubic: Pillow's `Image.resize(size, BICUBIC)` on an RGB image (ImagingResample:
//     separable passes with uint8 intermediates and 22-bit fixed-point coefficients).
//   - patchify: numpy's float32 `(float32(p * (1/255)) - mean) / std`, merge-block row order.
#pragma once

#include <cstdint>
#include <vector>

namespace vl3::media {

/** An 8-bit RGB image, rows top to bottom, pixels interleaved (HWC), no row padding. */
struct RgbImage {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> data;  // width * height * 3 bytes
};

/**
 * Which reference's bicubic resampling to reproduce: Pillow's `Image.resize(size, BICUBIC)` (the
 * image processor's) or torchvision's `resize(uint8 tensor, BICUBIC, antialias=True)` on an AVX2
 * CPU (the video processor's). Both are Keys cubic (a = -0.5) with antialiasing; they differ in
 * fixed-point precision and pass order, by at most one level.
 */
enum class ResizeFilter { Pillow, TorchVision };

/** A target size in pixels. */
struct ImageSize {
  int height = 0;
  int width = 0;
};

/** The resize budget and normalization of one image (the model's preprocessor config). */
struct ImageBudget {
  int patch_size = 14;            // pixels per patch side
  int merge_size = 1;             // patches per merge-block side (images 1, video frames 2)
  int64_t min_pixels = 3136;      // 16 * 14 * 14
  int64_t max_pixels = 3211264;   // 16384 * 14 * 14
  float mean[3] = {0.5f, 0.5f, 0.5f};
  float std[3] = {0.5f, 0.5f, 0.5f};
};

/** Output of preprocess_image: `pixels` is [grid_h * grid_w, 3 * patch * patch] float32. */
struct PreprocessedImage {
  std::vector<float> pixels;
  int grid_h = 0;  // patch rows    (resized_h / patch)
  int grid_w = 0;  // patch columns (resized_w / patch)
  int resized_h = 0;
  int resized_w = 0;
};

/**
 * Target size for an image of `height` x `width` pixels (spec §5.2), exactly as transformers'
 * `smart_resize`: both sides multiples of `factor`, area within [min_pixels, max_pixels] where
 * possible, aspect ratio kept. Throws InvalidArgument for non-positive sizes or factor, and for an
 * aspect ratio above 200:1.
 */
ImageSize smart_resize(int64_t height, int64_t width, int factor, int64_t min_pixels, int64_t max_pixels);

/**
 * Resizes to out_w x out_h with Pillow's BICUBIC filter (Keys cubic, a = -0.5, support scaled by the
 * downscale ratio), bit-exact with `Image.resize((out_w, out_h), Image.BICUBIC)` on an RGB image,
 * including Pillow's pass order (horizontal then vertical; vertical first for images taller than
 * 100x their width that shrink vertically) and the skipped pass when a side keeps its size.
 * Throws InvalidArgument for empty or inconsistent input and non-positive output sizes.
 */
RgbImage resize_bicubic(const RgbImage& src, int out_w, int out_h, ResizeFilter filter = ResizeFilter::Pillow);

/**
 * Writes the normalized patches of `img` to `out` (rows of 3*patch*patch floats, (c, y, x) order),
 * rows in merge-block order: (bi, bj, ii, jj) outer to inner, patch row bi*merge+ii, column
 * bj*merge+jj (plain raster order when merge == 1). Values are float32
 * `(float32(p * (1/255)) - mean[c]) / std[c]`. `out` must hold (h/patch)*(w/patch)*3*patch*patch
 * floats. Throws InvalidArgument when the size is not a multiple of patch*merge.
 */
void patchify(const RgbImage& img, int patch, int merge, const float mean[3], const float std[3], float* out);

/** Fixed-point bits of Pillow's resampling weights (PRECISION_BITS: 32 - 8 - 2). */
constexpr int kResamplePrecisionBits = 22;

/** The taps of one resize axis: output i reads `count[i]` inputs from `first[i]` with the
 *  fixed-point weights at weights[i * ksize ...], scaled by 2^precision. Shared by
 *  resize_bicubic and its GPU twin. */
struct ResampleTaps {
  int ksize = 0;
  int precision = kResamplePrecisionBits;
  std::vector<int> first;
  std::vector<int> count;
  std::vector<int32_t> weights;
};
ResampleTaps resample_taps(int in_size, int out_size, ResizeFilter filter);

/** The passes resize_bicubic runs for a size change (none, one, or both, in Pillow's order). */
struct ResizePlan {
  bool horizontal = false;
  bool vertical = false;
  bool vertical_first = false;
};
ResizePlan resize_plan(int in_w, int in_h, int out_w, int out_h, ResizeFilter filter);

/** The normalization patchify applies: table[c * 256 + p] is the float of level p in channel c. */
void normalize_table(const float mean[3], const float std[3], float table[3 * 256]);

/** Argument checks of resize_bicubic / patchify / any RGB image (InvalidArgument with the reason). */
void check_resize(const RgbImage& src, int out_w, int out_h);
void check_patchify(int width, int height, int patch, int merge);
void check_image(const RgbImage& img, const char* what);

/**
 * A twin of resize_bicubic + patchify with the same contract (writes the patches, and the resized
 * image when `resized` is not null), e.g. kernels::preprocess_cuda; null selects the CPU path.
 */
using PreprocessFn = void (*)(const RgbImage& src, int out_w, int out_h, ResizeFilter filter, int patch, int merge,
                              const float mean[3], const float std[3], float* out, RgbImage* resized);

/** smart_resize (factor patch*merge) + resize_bicubic + patchify, on the CPU or through `accel`. */
PreprocessedImage preprocess_image(const RgbImage& img, const ImageBudget& budget, PreprocessFn accel = nullptr);

}  // namespace vl3::media
