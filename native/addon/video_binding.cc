// videoFrameSize(height, width, numFrames, opts{ patchSize, mergeSize, minPixels, maxPixels }) -> { height, width }
//   (sync; spec §6.2: per-frame budget maxPixels / numFrames, integer division)
// createVideoPreprocessor(opts{ patchSize, mergeSize, height, width, mean, std, pruneThreshold })
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

#include "addon/async.h"
#include "addon/bindings.h"
#include "media/video.h"

namespace vl3::addon {
namespace {

constexpr double kMaxSafeInteger = 9007199254740991.0;  // Number.MAX_SAFE_INTEGER

std::string describe(const Napi::Value& v) {
  if (v.IsNumber()) return vl3::format("%.17g of type number", v.As<Napi::Number>().DoubleValue());
  if (v.IsString()) return "\"" + v.As<Napi::String>().Utf8Value() + "\" of type string";
  if (v.IsUndefined()) return "undefined";
  if (v.IsNull()) return "null";
  if (v.IsBoolean()) return v.As<Napi::Boolean>().Value() ? "true of type boolean" : "false of type boolean";
  if (v.IsArray()) return "an array";
  return "a value of type object";
}

[[noreturn]] void throw_expected(Napi::Env env, const char* fn, const std::string& name, const std::string& expected,
                                 const Napi::Value& actual) {
  throw_invalid(env, vl3::format("%s: Expected %s for %s but received %s", fn, expected.c_str(), name.c_str(),
                                 describe(actual).c_str()));
}

int64_t integer_arg(Napi::Env env, const char* fn, const std::string& name, const Napi::Value& v, double lo,
                    double hi) {
  const bool ok = v.IsNumber() && [&] {
    const double d = v.As<Napi::Number>().DoubleValue();
    return std::isfinite(d) && std::floor(d) == d && d >= lo && d <= hi;
  }();
  if (!ok) throw_expected(env, fn, name, vl3::format("integer between %.17g and %.17g", lo, hi), v);
  return static_cast<int64_t>(v.As<Napi::Number>().DoubleValue());
}

Napi::Object options_arg(Napi::Env env, const char* fn, const Napi::Value& v) {
  if (!v.IsObject() || v.IsArray()) throw_expected(env, fn, "opts", "options object", v);
  return v.As<Napi::Object>();
}

void triple_arg(Napi::Env env, const char* fn, Napi::Object opts, const char* key, bool nonzero, float out[3]) {
  const std::string name = std::string("opts.") + key;
  Napi::Value v = opts.Get(key);
  if (!v.IsArray() || v.As<Napi::Array>().Length() != 3) {
    throw_expected(env, fn, name, nonzero ? "array of 3 finite non-zero numbers" : "array of 3 finite numbers", v);
  }
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < 3; ++i) {
    Napi::Value e = a.Get(i);
    const double d = e.IsNumber() ? e.As<Napi::Number>().DoubleValue() : NAN;
    const float f = static_cast<float>(d);
    if (!std::isfinite(d) || !std::isfinite(f) || (nonzero && f == 0.0f)) {
      throw_expected(env, fn, name + "[" + std::to_string(i) + "]",
                     nonzero ? "finite non-zero number" : "finite number", e);
    }
    out[i] = f;
  }
}

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
  Napi::Value rgb = info[0];
  bool is_bytes = false;
  if (rgb.IsTypedArray()) {
    const napi_typedarray_type ty = rgb.As<Napi::TypedArray>().TypedArrayType();
    is_bytes = ty == napi_uint8_array || ty == napi_uint8_clamped_array;
  }
  if (!is_bytes) throw_expected(env, fn, "rgb", "Buffer or Uint8Array of RGB bytes", rgb);
  Napi::TypedArray bytes = rgb.As<Napi::TypedArray>();
  const int64_t w = integer_arg(env, fn, "width", info[1], 1, 1 << 24);
  const int64_t h = integer_arg(env, fn, "height", info[2], 1, 1 << 24);
  const size_t expected = static_cast<size_t>(w) * static_cast<size_t>(h) * 3;
  if (bytes.ByteLength() != expected) {
    throw_invalid(env, vl3::format("%s: rgb must hold width * height * 3 = %zu bytes for %lldx%lld pixels, got %zu", fn,
                                   expected, static_cast<long long>(w), static_cast<long long>(h), bytes.ByteLength()));
  }
  if (state->busy.exchange(true)) {
    throw_invalid(env, "push: the previous push on this video preprocessor has not finished; await each push "
                       "before the next (frames must be pushed in order)");
  }
  auto frame = std::make_shared<media::RgbImage>();
  try {
    frame->width = static_cast<int>(w);
    frame->height = static_cast<int>(h);
    const auto* src = static_cast<const uint8_t*>(bytes.ArrayBuffer().Data()) + bytes.ByteOffset();
    frame->data.assign(src, src + expected);
  } catch (...) {
    state->busy.store(false);
    throw;
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
        Napi::Float32Array pixels = Napi::Float32Array::New(env, r.pixels.size());
        if (!r.pixels.empty()) std::memcpy(pixels.Data(), r.pixels.data(), r.pixels.size() * sizeof(float));
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
  std::shared_ptr<VideoState> state;
  try {
    state = std::make_shared<VideoState>(media::VideoFramePreprocessor(
        static_cast<int>(patch), static_cast<int>(merge), media::ImageSize{static_cast<int>(h), static_cast<int>(w)},
        mean, std, static_cast<float>(td)));  // the reference compares in float32
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
