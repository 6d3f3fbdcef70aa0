// Video frame preprocessing (see video.h).
//
// Pruning arithmetic (the reference: transformers 5.18 VideoLlama3VideoProcessor._get_compression_mask)
// ------------------------------------------------------------------------------------------------
// The reference normalizes every value in float32, x = (p - 255*m_c) / (255*s_c) (fused
// rescale+normalize; the image path's (float32(p/255) - m_c)/s_c differs only in rounding), views
// each merged token as its N = 3*(patch*merge)^2 values (2352 for 14, 2), and keeps the token when
//     d = mean_N |x_t - x_{t-1}| * 255  >  threshold          (float32 throughout).
// In exact arithmetic x_t - x_{t-1} = (p_t - p_{t-1}) / (255 * s_c): the mean cancels, so with
// S_c = sum over the token's channel-c values of |Δp| (integers),
//     d_exact = (1/N) * sum_c S_c / |s_c|.
// This file evaluates the exact rule  sum_c S_c / |s_c| > threshold * N :
//   * all |s_c| equal (= s; the released models: s = 0.5): keep  <=>  S = sum_c S_c > (threshold*s)*N.
//     threshold*s is a product of two float32 values, exact in double (48-bit mantissa), and
//     std::fma(-(threshold*s), N, S) is the correctly rounded value of S - threshold*s*N, whose sign
//     is the exact sign, so the constructor finds the exact integer bound `min_sum` (keep <=> S >=
//     min_sum). Released models, threshold 0.1 (float32 0.100000001490116...), s = 0.5, N = 2352:
//     threshold*s*N = 117.6000018, min_sum = 118, i.e. the spec's  S >= 118.
//   * different |s_c|: sum_c S_c / |s_c| and threshold*N in double (relative error ~1e-16).
// Equivalence with the float32 reference (released settings; m = s = 0.5, N = 2352, threshold 0.1):
//   x = fl((p - 127.5) / 127.5): p - 127.5 is exact, one rounding, |x| <= 1 -> error <= 2^-25; equal p
//   give equal x, so unchanged values contribute exactly 0. Each nonzero |Δx| (at most S of them)
//   has error <= 2*2^-25 + 2^-24 (the subtraction, |Δx| <= 2) = 2^-23. Summing N non-negative
//   float32 terms in any order has relative error <= (N-1)*2^-24 < 1.41e-4; the division by N and
//   the *255 add 2^-23 relative. Hence  d_ref = d_exact * (1 +- 1.42e-4) +- S * 2^-23 * 255/2352
//   with d_exact = S / 1176. For S >= 118: d_ref >= S*(1/1176*(1-1.42e-4) - 1.3e-8) >= 0.10032 > 0.1.
//   For S <= 117: d_ref <= 117*(1/1176*(1+1.42e-4) + 1.3e-8) <= 0.09951 < 0.1. So the reference
//   keeps a token exactly when S >= 118, whatever its summation order. For other settings the exact
//   rule can disagree with the float32 reference only on tokens whose exact score lies within the
//   reference's own rounding noise (relative ~1.5e-4) of the threshold.
// Threshold 0 disables pruning (every token kept; the reference has no such switch other than
// use_token_compression=False, which is what 0 means here). The first frame keeps every token; a
// frame with no kept token keeps token 0 (min_tokens = 1).
#include "media/video.h"

#include <cmath>
#include <cstdlib>
#include <utility>

#include "common/status.h"

namespace vl3::media {
namespace {

constexpr int64_t kMaxSide = 1 << 24;
constexpr int64_t kMaxPixels = int64_t(1) << 31;

void check_patch_merge(int patch, int merge, const char* what) {
  check(patch > 0 && patch <= 1024 && merge > 0 && merge <= 64, ErrorCode::InvalidArgument,
        format("%s: patch size %d and merge size %d must be positive (at most 1024 and 64)", what, patch, merge));
}

void check_frame(const RgbImage& img, const char* what) {
  check(img.width > 0 && img.height > 0 && img.width <= kMaxSide && img.height <= kMaxSide,
        ErrorCode::InvalidArgument,
        format("%s: frame of %dx%d pixels must be non-empty and at most %lld pixels per side", what, img.width,
               img.height, static_cast<long long>(kMaxSide)));
  const size_t expected = static_cast<size_t>(img.width) * static_cast<size_t>(img.height) * 3;
  check(img.data.size() == expected, ErrorCode::InvalidArgument,
        format("%s: RGB data of a %dx%d frame must be %zu bytes, got %zu", what, img.width, img.height, expected,
               img.data.size()));
}

void check_norm(float threshold, const float mean[3], const float std[3], const char* what) {
  check(std::isfinite(threshold) && threshold >= 0.0f, ErrorCode::InvalidArgument,
        format("%s: prune threshold must be a finite number >= 0, got %g", what, static_cast<double>(threshold)));
  for (int c = 0; c < 3; ++c) {
    check(std::isfinite(mean[c]) && std::isfinite(std[c]) && std[c] != 0.0f, ErrorCode::InvalidArgument,
          format("%s: mean[%d] = %g must be finite and std[%d] = %g finite and non-zero", what, c,
                 static_cast<double>(mean[c]), c, static_cast<double>(std[c])));
  }
}

/** Per merged token, per channel, sum of |cur - prev| over the token's block. */
std::vector<uint8_t> apply_rule(const RgbImage& prev, const RgbImage& cur, int block, const PruneRule& rule) {
  const int bh = cur.height / block, bw = cur.width / block;
  std::vector<uint8_t> keep(static_cast<size_t>(bh) * bw, 1);
  if (rule.disabled) return keep;
  const size_t stride = static_cast<size_t>(cur.width) * 3;
  std::vector<int64_t> sums(static_cast<size_t>(bw) * 3);
  int kept = 0;
  for (int bi = 0; bi < bh; ++bi) {
    std::fill(sums.begin(), sums.end(), 0);
    for (int y = 0; y < block; ++y) {
      const size_t row = (static_cast<size_t>(bi) * block + y) * stride;
      const uint8_t* a = &cur.data[row];
      const uint8_t* b = &prev.data[row];
      for (int bj = 0; bj < bw; ++bj) {
        int64_t s[3] = {0, 0, 0};
        const size_t base = static_cast<size_t>(bj) * block * 3;
        for (int x = 0; x < block; ++x) {
          for (int c = 0; c < 3; ++c) s[c] += std::abs(int(a[base + x * 3 + c]) - int(b[base + x * 3 + c]));
        }
        for (int c = 0; c < 3; ++c) sums[static_cast<size_t>(bj) * 3 + c] += s[c];
      }
    }
    for (int bj = 0; bj < bw; ++bj) {
      const bool k = rule.keep(&sums[static_cast<size_t>(bj) * 3]);
      keep[static_cast<size_t>(bi) * bw + bj] = k ? 1 : 0;
      kept += k ? 1 : 0;
    }
  }
  if (kept == 0 && !keep.empty()) keep[0] = 1;  // min_tokens = 1
  return keep;
}

}  // namespace

// See the comment at the top of this file.
PruneRule::PruneRule(int patch, int merge, float threshold, const float std[3]) {
  disabled = threshold == 0.0f;
  const int64_t block = static_cast<int64_t>(patch) * merge;
  const double n = static_cast<double>(3 * block * block);  // <= 3 * 2^32, exact
  const double s0 = std::fabs(static_cast<double>(std[0]));
  equal_std = s0 == std::fabs(static_cast<double>(std[1])) && s0 == std::fabs(static_cast<double>(std[2]));
  for (int c = 0; c < 3; ++c) inv_std[c] = 1.0 / std::fabs(static_cast<double>(std[c]));
  bound = static_cast<double>(threshold) * n;
  if (equal_std && !disabled) {
    const double ts = static_cast<double>(threshold) * s0;  // exact: 24-bit x 24-bit mantissas
    // Smallest integer S with S - ts*n > 0, decided by the exact sign of fma(-ts, n, S).
    const double approx = std::floor(ts * n);
    if (!(approx < 255.0 * n)) {
      min_sum = static_cast<int64_t>(255.0 * n) + 1;  // unreachable: S <= 255 * n
    } else {
      int64_t s = approx > 1.0 ? static_cast<int64_t>(approx) - 1 : 0;
      while (!(std::fma(-ts, n, static_cast<double>(s)) > 0.0)) ++s;
      min_sum = s;
    }
  }
}

bool PruneRule::keep(const int64_t sums[3]) const {
  if (disabled) return true;
  if (equal_std) return sums[0] + sums[1] + sums[2] >= min_sum;
  const double v = static_cast<double>(sums[0]) * inv_std[0] + static_cast<double>(sums[1]) * inv_std[1] +
                   static_cast<double>(sums[2]) * inv_std[2];
  return v > bound;
}

ImageSize video_frame_size(int64_t h, int64_t w, int64_t num_frames, int patch, int merge, int64_t min_pixels,
                           int64_t max_pixels) {
  check_patch_merge(patch, merge, "video_frame_size");
  check(num_frames > 0, ErrorCode::InvalidArgument,
        format("video_frame_size: number of frames must be positive, got %lld", static_cast<long long>(num_frames)));
  check(max_pixels > 0 && min_pixels >= 0, ErrorCode::InvalidArgument,
        format("video_frame_size: need min_pixels >= 0 and max_pixels > 0, got %lld and %lld",
               static_cast<long long>(min_pixels), static_cast<long long>(max_pixels)));
  const int64_t per_frame = max_pixels / num_frames;
  check(per_frame > 0, ErrorCode::InvalidArgument,
        format("video_frame_size: max_pixels %lld spread over %lld frames leaves no pixel per frame",
               static_cast<long long>(max_pixels), static_cast<long long>(num_frames)));
  return smart_resize(h, w, patch * merge, min_pixels, per_frame);
}

void check_keep_mask(const RgbImage& prev, const RgbImage& cur, int patch, int merge, float threshold,
                     const float mean[3], const float std[3]) {
  check_patch_merge(patch, merge, "keep_mask");
  check_frame(prev, "keep_mask");
  check_frame(cur, "keep_mask");
  check_norm(threshold, mean, std, "keep_mask");
  check(prev.width == cur.width && prev.height == cur.height, ErrorCode::InvalidArgument,
        format("keep_mask: frames differ in size (%dx%d vs %dx%d)", prev.width, prev.height, cur.width, cur.height));
  const int block = patch * merge;
  check(cur.width % block == 0 && cur.height % block == 0, ErrorCode::InvalidArgument,
        format("keep_mask: frame of %dx%d pixels is not a multiple of patch * merge = %d", cur.width, cur.height,
               block));
}

std::vector<uint8_t> keep_mask(const RgbImage& prev, const RgbImage& cur, int patch, int merge, float threshold,
                               const float mean[3], const float std[3]) {
  check_keep_mask(prev, cur, patch, merge, threshold, mean, std);
  return apply_rule(prev, cur, patch * merge, PruneRule(patch, merge, threshold, std));
}

VideoFramePreprocessor::VideoFramePreprocessor(int patch, int merge, ImageSize target, const float mean[3],
                                               const float std[3], float prune_threshold, PreprocessFn preprocess,
                                               KeepMaskFn keep_mask)
    : patch_(patch),
      merge_(merge),
      target_(target),
      threshold_(prune_threshold),
      preprocess_(preprocess),
      keep_mask_(keep_mask) {
  check_patch_merge(patch, merge, "VideoFramePreprocessor");
  check_norm(prune_threshold, mean, std, "VideoFramePreprocessor");
  const int block = patch * merge;
  check(target.height > 0 && target.width > 0 && target.height % block == 0 && target.width % block == 0 &&
            target.height <= kMaxSide && target.width <= kMaxSide &&
            static_cast<int64_t>(target.height) * target.width <= kMaxPixels,
        ErrorCode::InvalidArgument,
        format("VideoFramePreprocessor: target size %dx%d must be positive multiples of patch * merge = %d "
               "(at most %lld pixels)",
               target.width, target.height, block, static_cast<long long>(kMaxPixels)));
  for (int c = 0; c < 3; ++c) {
    mean_[c] = mean[c];
    std_[c] = std[c];
  }
}

VideoFrame VideoFramePreprocessor::push(const RgbImage& frame) {
  check_frame(frame, "VideoFramePreprocessor::push");
  if (frames_ > 0) {
    check(frame.width == src_w_ && frame.height == src_h_, ErrorCode::InvalidArgument,
          format("VideoFramePreprocessor::push: frame %d is %dx%d pixels but the video's frames are %dx%d", frames_,
                 frame.width, frame.height, src_w_, src_h_));
  }
  VideoFrame out;
  out.grid_h = target_.height / patch_;
  out.grid_w = target_.width / patch_;
  out.pixels.resize(static_cast<size_t>(out.grid_h) * out.grid_w * 3 * patch_ * patch_);
  RgbImage resized;
  if (preprocess_ != nullptr) {
    preprocess_(frame, target_.width, target_.height, ResizeFilter::TorchVision, patch_, merge_, mean_, std_,
                out.pixels.data(), &resized);
  } else {
    resized = resize_bicubic(frame, target_.width, target_.height, ResizeFilter::TorchVision);
    patchify(resized, patch_, merge_, mean_, std_, out.pixels.data());
  }
  if (frames_ == 0) {
    out.keep.assign(static_cast<size_t>(out.grid_h / merge_) * (out.grid_w / merge_), 1);
  } else if (keep_mask_ != nullptr) {
    out.keep = keep_mask_(prev_, resized, patch_, merge_, threshold_, mean_, std_);
  } else {
    out.keep = apply_rule(prev_, resized, patch_ * merge_, PruneRule(patch_, merge_, threshold_, std_));
  }
  int kept = 0;
  for (uint8_t k : out.keep) kept += k;
  out.kept_count = kept;
  // Commit the state only once everything above has succeeded.
  prev_ = std::move(resized);
  if (frames_ == 0) {
    src_w_ = frame.width;
    src_h_ = frame.height;
  }
  ++frames_;
  return out;
}

}  // namespace vl3::media
