// videoFrameSize(height, width, numFrames, opts{ patchSize, mergeSize, minPixels, maxPixels }) -> { height, width }
//   (sync; spec §6.2: per-frame budget maxPixels / numFrames, integer division)
// createVideoPreprocessor(opts{ patchSize, mergeSize, height, width, mean, std, pruneThreshold, device? })
//   device 'cuda' resizes, patchifies and computes keep masks with our CUDA kernels (kernels/kernels.h)
//   -> { push(rgb, width, height): Promise<{ pixels: Float32Array, keep: Uint8Array, kept, gridH, gridW }> }
//   `height`/`width` are the target frame size (videoFrameSize's result). pushes on one
//   preprocessor must be sequential (await each push before the next): a push while another is
//   still running throws INVALID_ARGUMENT synchronously. pruneThreshold 0 keeps every token.
// Streaming video frame preprocessing with differential frame pruning (native/media/video.h).
#include <atomic>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>

#include "addon/args.h"
#include "addon/async.h"
#include "addon/bindings.h"
#include "media/video.h"

namespace vl3::addon {
namespace {

using namespace args;  // NOLINT: argument helpers

Napi::Value VideoFrameSize(const Napi::CallbackInfo& info) {
  constexpr const char* fn = "videoFrameSize";
  Napi::Env env = info.Env();
  const int64_t h = integer_arg(env, fn, "height", info[0], 1, 1 << 24);
  const int64_t w = integer_arg(env, fn, "width", info[1], 1, 1 << 24);
  const int64_t t = integer_arg(env, fn, "numFrames", info[2], 1, kMaxSafeInteger);
  Napi::Object o = options_arg(env, fn, info[3]);
  const int64_t patch = integer_arg(env, fn, "opts.patchSize", o.Get("patchSize"), 1, 1024);
  const int64_t merge = integer_arg(env, fn, "opts.mergeSize", o.Get("mergeSize"), 1, 64);
  const int64_t lo = integer_arg(env, fn, "opts.minPixels", o.Get("minPixels"), 0, kMaxSafeInteger);
  const int64_t hi = integer_arg(env, fn, "opts.maxPixels", o.Get("maxPixels"), 1, kMaxSafeInteger);
  media::ImageSize size;
  try {
    size = media::video_frame_size(h, w, t, static_cast<int>(patch), static_cast<int>(merge), lo, hi);
  } catch (const vl3::Error& e) {
    throw make_error(env, e.code_name(), e.what());
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("height", size.height);
  out.Set("width", size.width);
  return out;
}

/** One video's preprocessor plus the flag that keeps its pushes sequential. */
struct VideoState {
  explicit VideoState(media::VideoFramePreprocessor p) : pre(std::move(p)) {}
  media::VideoFramePreprocessor pre;
  std::atomic<bool> busy{false};
};

Napi::Value Push(const Napi::CallbackInfo& info, const std::shared_ptr<VideoState>& state) {
  constexpr const char* fn = "push";
  Napi::Env env = info.Env();
  auto frame = std::make_shared<media::RgbImage>(rgb_args(info, fn));
  if (state->busy.exchange(true)) {
    throw_invalid(env, "push: the previous push on this video preprocessor has not finished; await each push "
                       "before the next (frames must be pushed in order)");
  }
  return PromiseWorker<media::VideoFrame>::Start(
      env,
      [state, frame]() {
        try {
          return state->pre.push(*frame);
        } catch (...) {
          state->busy.store(false);  // a failed push leaves the preprocessor unchanged
          throw;
        }
      },
      [state](Napi::Env env, media::VideoFrame& r) -> Napi::Value {
        state->busy.store(false);  // on the JS thread: a push made before this one resolved still throws
        Napi::Float32Array pixels = to_f32(env, r.pixels);
        Napi::Uint8Array keep = Napi::Uint8Array::New(env, r.keep.size());
        if (!r.keep.empty()) std::memcpy(keep.Data(), r.keep.data(), r.keep.size());
        Napi::Object out = Napi::Object::New(env);
        out.Set("pixels", pixels);
        out.Set("keep", keep);
        out.Set("kept", r.kept_count);
        out.Set("gridH", r.grid_h);
        out.Set("gridW", r.grid_w);
        return out;
      });
}

Napi::Value CreateVideoPreprocessor(const Napi::CallbackInfo& info) {
  constexpr const char* fn = "createVideoPreprocessor";
  Napi::Env env = info.Env();
  Napi::Object o = options_arg(env, fn, info[0]);
  const int64_t patch = integer_arg(env, fn, "opts.patchSize", o.Get("patchSize"), 1, 1024);
  const int64_t merge = integer_arg(env, fn, "opts.mergeSize", o.Get("mergeSize"), 1, 64);
  const int64_t h = integer_arg(env, fn, "opts.height", o.Get("height"), 1, 1 << 24);
  const int64_t w = integer_arg(env, fn, "opts.width", o.Get("width"), 1, 1 << 24);
  float mean[3], std[3];
  triple_arg(env, fn, o, "mean", false, mean);
  triple_arg(env, fn, o, "std", true, std);
  Napi::Value tv = o.Get("pruneThreshold");
  const double td = tv.IsNumber() ? tv.As<Napi::Number>().DoubleValue() : NAN;
  if (!std::isfinite(td) || td < 0 || !std::isfinite(static_cast<float>(td))) {
    throw_expected(env, fn, "opts.pruneThreshold", "finite number >= 0", tv);
  }
  const bool gpu = cuda_device_arg(env, fn, o);
  std::shared_ptr<VideoState> state;
  try {
    state = std::make_shared<VideoState>(media::VideoFramePreprocessor(
        static_cast<int>(patch), static_cast<int>(merge), media::ImageSize{static_cast<int>(h), static_cast<int>(w)},
        mean, std, static_cast<float>(td),  // the reference compares in float32
        gpu ? kernels::preprocess_cuda : nullptr, gpu ? kernels::keep_mask_cuda : nullptr));
  } catch (const vl3::Error& e) {
    throw make_error(env, e.code_name(), e.what());
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("push", Napi::Function::New(
                      env, [state](const Napi::CallbackInfo& ci) { return Push(ci, state); }, "push"));
  return out;
}

}  // namespace

void RegisterVideo(Napi::Env env, Napi::Object exports) {
  exports.Set("videoFrameSize", Napi::Function::New(env, VideoFrameSize, "videoFrameSize"));
  exports.Set("createVideoPreprocessor", Napi::Function::New(env, CreateVideoPreprocessor, "createVideoPreprocessor"));
}

}  // namespace vl3::addon
