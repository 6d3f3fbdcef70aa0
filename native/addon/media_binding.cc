// preprocessImage(rgb, width, height, opts) -> Promise<{ pixels, gridH, gridW, resizedWidth, resizedHeight }>
// resizeBicubic(rgb, width, height, outWidth, outHeight) -> Buffer   (sync; for tests)
// smartResize(height, width, factor, minPixels, maxPixels) -> { height, width }   (sync)
// Image preprocessing of decoded RGB pixels (native/media/image.h); decoding is lib/media/image.ts.
#include <cmath>
#include <cstring>
#include <string>

#include "addon/async.h"
#include "addon/bindings.h"
#include "media/image.h"

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
  if (v.IsTypedArray()) return "a typed array of another element type";
  return "a value of type object";
}

[[noreturn]] void throw_expected(Napi::Env env, const char* fn, const std::string& name, const std::string& expected,
                                 const Napi::Value& actual) {
  throw_invalid(env, vl3::format("%s: Expected %s for %s but received %s", fn, expected.c_str(), name.c_str(),
                                 describe(actual).c_str()));
}

/** An integer Number within [lo, hi]. */
int64_t integer_arg(Napi::Env env, const char* fn, const std::string& name, const Napi::Value& v, double lo,
                    double hi) {
  const bool ok = v.IsNumber() && [&] {
    const double d = v.As<Napi::Number>().DoubleValue();
    return std::isfinite(d) && std::floor(d) == d && d >= lo && d <= hi;
  }();
  if (!ok) throw_expected(env, fn, name, vl3::format("integer between %.17g and %.17g", lo, hi), v);
  return static_cast<int64_t>(v.As<Napi::Number>().DoubleValue());
}

/** The bytes of a Buffer / Uint8Array / Uint8ClampedArray. */
Napi::TypedArray bytes_arg(Napi::Env env, const char* fn, const std::string& name, const Napi::Value& v) {
  if (v.IsTypedArray()) {
    Napi::TypedArray a = v.As<Napi::TypedArray>();
    if (a.TypedArrayType() == napi_uint8_array || a.TypedArrayType() == napi_uint8_clamped_array) return a;
  }
  throw_expected(env, fn, name, "Buffer or Uint8Array of RGB bytes", v);
}

/** Copies the (rgb, width, height) arguments starting at info[first] into an RgbImage. */
media::RgbImage rgb_args(const Napi::CallbackInfo& info, const char* fn) {
  Napi::Env env = info.Env();
  Napi::TypedArray bytes = bytes_arg(env, fn, "rgb", info[0]);
  const int64_t w = integer_arg(env, fn, "width", info[1], 1, 1 << 24);
  const int64_t h = integer_arg(env, fn, "height", info[2], 1, 1 << 24);
  const size_t expected = static_cast<size_t>(w) * static_cast<size_t>(h) * 3;
  if (bytes.ByteLength() != expected) {
    throw_invalid(env, vl3::format("%s: rgb must hold width * height * 3 = %zu bytes for %lldx%lld pixels, got %zu", fn,
                                   expected, static_cast<long long>(w), static_cast<long long>(h), bytes.ByteLength()));
  }
  media::RgbImage img;
  img.width = static_cast<int>(w);
  img.height = static_cast<int>(h);
  const auto* src = static_cast<const uint8_t*>(bytes.ArrayBuffer().Data()) + bytes.ByteOffset();
  img.data.assign(src, src + expected);
  return img;
}

void triple_arg(Napi::Env env, const char* fn, Napi::Object opts, const char* key, bool nonzero, float out[3]) {
  const std::string name = std::string("opts.") + key;
  Napi::Value v = opts.Get(key);
  const char* expected = nonzero ? "array of 3 finite non-zero numbers" : "array of 3 finite numbers";
  if (!v.IsArray() || v.As<Napi::Array>().Length() != 3) throw_expected(env, fn, name, expected, v);
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < 3; ++i) {
    Napi::Value e = a.Get(i);
    const double d = e.IsNumber() ? e.As<Napi::Number>().DoubleValue() : NAN;
    const float f = static_cast<float>(d);
    if (!std::isfinite(d) || !std::isfinite(f) || (nonzero && f == 0.0f)) {
      const std::string item = name + "[" + std::to_string(i) + "]";
      throw_expected(env, fn, item, nonzero ? "finite non-zero number" : "finite number", e);
    }
    out[i] = f;  // the reference holds mean/std as float32
  }
}

Napi::Value PreprocessImage(const Napi::CallbackInfo& info) {
  constexpr const char* fn = "preprocessImage";
  Napi::Env env = info.Env();
  media::RgbImage img = rgb_args(info, fn);
  if (!info[3].IsObject()) throw_expected(env, fn, "opts", "options object", info[3]);
  Napi::Object o = info[3].As<Napi::Object>();
  media::ImageBudget b;
  b.patch_size = static_cast<int>(integer_arg(env, fn, "opts.patchSize", o.Get("patchSize"), 1, 1024));
  b.merge_size = static_cast<int>(integer_arg(env, fn, "opts.mergeSize", o.Get("mergeSize"), 1, 64));
  b.min_pixels = integer_arg(env, fn, "opts.minPixels", o.Get("minPixels"), 0, kMaxSafeInteger);
  b.max_pixels = integer_arg(env, fn, "opts.maxPixels", o.Get("maxPixels"), 1, kMaxSafeInteger);
  triple_arg(env, fn, o, "mean", false, b.mean);
  triple_arg(env, fn, o, "std", true, b.std);

  auto shared = std::make_shared<media::RgbImage>(std::move(img));
  return PromiseWorker<media::PreprocessedImage>::Start(
      env, [shared, b]() { return media::preprocess_image(*shared, b); },
      [](Napi::Env env, media::PreprocessedImage& r) -> Napi::Value {
        Napi::Float32Array pixels = Napi::Float32Array::New(env, r.pixels.size());
        if (!r.pixels.empty()) std::memcpy(pixels.Data(), r.pixels.data(), r.pixels.size() * sizeof(float));
        Napi::Object out = Napi::Object::New(env);
        out.Set("pixels", pixels);
        out.Set("gridH", r.grid_h);
        out.Set("gridW", r.grid_w);
        out.Set("resizedWidth", r.resized_w);
        out.Set("resizedHeight", r.resized_h);
        return out;
      });
}

Napi::Value ResizeBicubic(const Napi::CallbackInfo& info) {
  constexpr const char* fn = "resizeBicubic";
  Napi::Env env = info.Env();
  media::RgbImage img = rgb_args(info, fn);
  const int64_t ow = integer_arg(env, fn, "outWidth", info[3], 1, 1 << 24);
  const int64_t oh = integer_arg(env, fn, "outHeight", info[4], 1, 1 << 24);
  media::RgbImage out;
  try {
    out = media::resize_bicubic(img, static_cast<int>(ow), static_cast<int>(oh));
  } catch (const vl3::Error& e) {
    throw make_error(env, e.code_name(), e.what());
  } catch (const std::bad_alloc&) {
    throw make_error(env, "OUT_OF_MEMORY", vl3::format("%s: out of memory for %lldx%lld pixels", fn,
                                                       static_cast<long long>(ow), static_cast<long long>(oh)));
  }
  return Napi::Buffer<uint8_t>::Copy(env, out.data.data(), out.data.size());
}

Napi::Value SmartResize(const Napi::CallbackInfo& info) {
  constexpr const char* fn = "smartResize";
  Napi::Env env = info.Env();
  const int64_t h = integer_arg(env, fn, "height", info[0], 1, 1 << 24);
  const int64_t w = integer_arg(env, fn, "width", info[1], 1, 1 << 24);
  const int64_t factor = integer_arg(env, fn, "factor", info[2], 1, 1 << 16);
  const int64_t lo = integer_arg(env, fn, "minPixels", info[3], 0, kMaxSafeInteger);
  const int64_t hi = integer_arg(env, fn, "maxPixels", info[4], 1, kMaxSafeInteger);
  media::ImageSize size;
  try {
    size = media::smart_resize(h, w, static_cast<int>(factor), lo, hi);
  } catch (const vl3::Error& e) {
    throw make_error(env, e.code_name(), e.what());
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("height", size.height);
  out.Set("width", size.width);
  return out;
}

}  // namespace

void RegisterMedia(Napi::Env env, Napi::Object exports) {
  exports.Set("preprocessImage", Napi::Function::New(env, PreprocessImage, "preprocessImage"));
  exports.Set("resizeBicubic", Napi::Function::New(env, ResizeBicubic, "resizeBicubic"));
  exports.Set("smartResize", Napi::Function::New(env, SmartResize, "smartResize"));
}

}  // namespace vl3::addon
