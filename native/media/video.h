// Video frame preprocessing (spec §6.2-§6.4): per-frame target size, streaming resize + patchify of
// decoded frames, and differential frame pruning ("token compression") computed frame by frame.
// The resampler, normalization and patch order are those of the image path (media/image.h) with
// merge size 2; only the previous frame's resized pixels are kept, so memory is bounded by one frame.
//
// `keep_mask` is the CPU reference of the token-merging (pruning) kernel; see video.cpp for the
// exact arithmetic and its equivalence to the float32 reference (transformers'
// `VideoLlama3VideoProcessor._get_compression_mask`).
#pragma once

#include <cstdint>
#include <vector>

#include "media/image.h"

namespace vl3::media {

/**
 * Target size of every frame of a video of `num_frames` frames of `h` x `w` pixels (spec §6.2):
 * smart_resize with factor patch*merge, per-frame budget max_pixels / num_frames (integer
 * division) and min_pixels per frame. Throws InvalidArgument for bad sizes, counts or budgets.
 */
ImageSize video_frame_size(int64_t h, int64_t w, int64_t num_frames, int patch, int merge, int64_t min_pixels,
                           int64_t max_pixels);

/**
 * Keep mask of `cur` against the previous frame `prev` (both already resized, same size, sides
 * multiples of patch*merge): one entry per merged token ((h/(patch*merge)) * (w/(patch*merge)),
 * raster order of the merged grid), 1 = keep. A token is kept when the mean over its
 * 3*(patch*merge)^2 values of |normalized(cur) - normalized(prev)| times 255 exceeds `threshold`;
 * a threshold of 0 keeps every token; a frame keeping no token keeps token 0.
 * Throws InvalidArgument for mismatched/ill-sized images, a negative or non-finite threshold, or a
 * zero/non-finite std.
 */
std::vector<uint8_t> keep_mask(const RgbImage& prev, const RgbImage& cur, int patch, int merge, float threshold,
                               const float mean[3], const float std[3]);

/** A twin of keep_mask with the same contract (kernels::keep_mask_cuda); null selects the CPU path. */
using KeepMaskFn = std::vector<uint8_t> (*)(const RgbImage& prev, const RgbImage& cur, int patch, int merge,
                                            float threshold, const float mean[3], const float std[3]);

/** Argument checks of keep_mask (InvalidArgument with the reason); shared with its GPU twin. */
void check_keep_mask(const RgbImage& prev, const RgbImage& cur, int patch, int merge, float threshold,
                     const float mean[3], const float std[3]);

/**
 * The pruning decision of one configuration, from a merged token's per-channel sums of |Δ level|
 * (video.cpp explains the exact arithmetic). Shared by keep_mask and its GPU twin.
 */
struct PruneRule {
  bool disabled = false;   // threshold 0: keep everything
  bool equal_std = false;  // integer criterion S >= min_sum
  int64_t min_sum = 0;
  double inv_std[3] = {0, 0, 0};
  double bound = 0;  // threshold * N, for the unequal-std case

  PruneRule(int patch, int merge, float threshold, const float std[3]);
  bool keep(const int64_t sums[3]) const;
};

/** One preprocessed frame: `pixels` is [grid_h * grid_w, 3 * patch * patch] in merge-block order. */
struct VideoFrame {
  std::vector<float> pixels;
  std::vector<uint8_t> keep;  // (grid_h / merge) * (grid_w / merge) entries, 1 = keep
  int kept_count = 0;
  int grid_h = 0;
  int grid_w = 0;
};

/**
 * Streaming preprocessor of one video: every pushed frame is resized to the target size (Pillow
 * bicubic), patchified and given its keep mask against the previously pushed frame (the first
 * frame keeps all tokens). All frames must have the same source size. Not thread-safe: push()
 * calls must not overlap.
 */
class VideoFramePreprocessor {
 public:
  /** Throws InvalidArgument for bad patch/merge, a target size that is not a positive multiple of
   *  patch*merge, a negative/non-finite threshold or a zero/non-finite mean or std. `preprocess` and
   *  `keep_mask` select accelerated twins of the per-frame steps (null: the CPU path). */
  VideoFramePreprocessor(int patch, int merge, ImageSize target, const float mean[3], const float std[3],
                         float prune_threshold, PreprocessFn preprocess = nullptr, KeepMaskFn keep_mask = nullptr);

  VideoFrame push(const RgbImage& frame);

  int frames_pushed() const { return frames_; }
  ImageSize target() const { return target_; }

 private:
  int patch_;
  int merge_;
  ImageSize target_;
  float mean_[3];
  float std_[3];
  float threshold_;
  PreprocessFn preprocess_;
  KeepMaskFn keep_mask_;
  int frames_ = 0;
  int src_w_ = 0;
  int src_h_ = 0;
  RgbImage prev_;  // the previous frame, resized
};

}  // namespace vl3::media
