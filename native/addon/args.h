// Argument parsing shared by the media and video bindings: every check throws a coded
// INVALID_ARGUMENT error saying which argument, what was expected and what was received.
#pragma once

#include <napi.h>

#include <cmath>
#include <string>

#include "addon/async.h"
#include "common/status.h"
#include "kernels/kernels.h"
#include "media/image.h"

namespace vl3::addon::args {

inline constexpr double kMaxSafeInteger = 9007199254740991.0;  // Number.MAX_SAFE_INTEGER

inline std::string describe(const Napi::Value& v) {
  if (v.IsNumber()) return vl3::format("%.17g of type number", v.As<Napi::Number>().DoubleValue());
  if (v.IsString()) return "\"" + v.As<Napi::String>().Utf8Value() + "\" of type string";
  if (v.IsUndefined()) return "undefined";
  if (v.IsNull()) return "null";
  if (v.IsBoolean()) return v.As<Napi::Boolean>().Value() ? "true of type boolean" : "false of type boolean";
  if (v.IsArray()) return "an array";
  if (v.IsTypedArray()) return "a typed array of another element type";
  return "a value of type object";
}

[[noreturn]] inline void throw_expected(Napi::Env env, const char* fn, const std::string& name, const std::string& expected,
                                 const Napi::Value& actual) {
  throw_invalid(env, vl3::format("%s: Expected %s for %s but received %s", fn, expected.c_str(), name.c_str(),
                                 describe(actual).c_str()));
}

/** An integer Number within [lo, hi]. */
inline int64_t integer_arg(Napi::Env env, const char* fn, const std::string& name, const Napi::Value& v, double lo,
                    double hi) {
  const bool ok = v.IsNumber() && [&] {
    const double d = v.As<Napi::Number>().DoubleValue();
    return std::isfinite(d) && std::floor(d) == d && d >= lo && d <= hi;
  }();
  if (!ok) throw_expected(env, fn, name, vl3::format("integer between %.17g and %.17g", lo, hi), v);
  return static_cast<int64_t>(v.As<Napi::Number>().DoubleValue());
}

/** The bytes of a Buffer / Uint8Array / Uint8ClampedArray. */
inline Napi::TypedArray bytes_arg(Napi::Env env, const char* fn, const std::string& name, const Napi::Value& v) {
  if (v.IsTypedArray()) {
    Napi::TypedArray a = v.As<Napi::TypedArray>();
    if (a.TypedArrayType() == napi_uint8_array || a.TypedArrayType() == napi_uint8_clamped_array) return a;
  }
  throw_expected(env, fn, name, "Buffer or Uint8Array of RGB bytes", v);
}

/** Copies `bytes` (argument `name`, from bytes_arg) of a `w` x `h` RGB image into an RgbImage. */
inline media::RgbImage rgb_image(Napi::Env env, const char* fn, const char* name, const Napi::TypedArray& bytes,
                                 int64_t w, int64_t h) {
  const size_t expected = static_cast<size_t>(w) * static_cast<size_t>(h) * 3;
  if (bytes.ByteLength() != expected) {
    throw_invalid(env, vl3::format("%s: %s must hold width * height * 3 = %zu bytes for %lldx%lld pixels, got %zu", fn,
                                   name, expected, static_cast<long long>(w), static_cast<long long>(h),
                                   bytes.ByteLength()));
  }
  media::RgbImage img;
  img.width = static_cast<int>(w);
  img.height = static_cast<int>(h);
  const auto* src = static_cast<const uint8_t*>(bytes.ArrayBuffer().Data()) + bytes.ByteOffset();
  img.data.assign(src, src + expected);
  return img;
}

/** Copies the (rgb, width, height) arguments info[0..2] into an RgbImage. */
inline media::RgbImage rgb_args(const Napi::CallbackInfo& info, const char* fn) {
  Napi::Env env = info.Env();
  Napi::TypedArray bytes = bytes_arg(env, fn, "rgb", info[0]);
  const int64_t w = integer_arg(env, fn, "width", info[1], 1, 1 << 24);
  const int64_t h = integer_arg(env, fn, "height", info[2], 1, 1 << 24);
  return rgb_image(env, fn, "rgb", bytes, w, h);
}

inline void triple_arg(Napi::Env env, const char* fn, Napi::Object opts, const char* key, bool nonzero, float out[3]) {
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

/** An options object (not an array). */
inline Napi::Object options_arg(Napi::Env env, const char* fn, const Napi::Value& v) {
  if (!v.IsObject() || v.IsArray()) throw_expected(env, fn, "opts", "options object", v);
  return v.As<Napi::Object>();
}

/** `opts.filter`: 'pillow' (also when absent) or 'torchvision' (media::ResizeFilter). */
inline media::ResizeFilter filter_arg(Napi::Env env, const char* fn, Napi::Object opts) {
  Napi::Value v = opts.Get("filter");
  if (v.IsUndefined()) return media::ResizeFilter::Pillow;
  const std::string f = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  if (f != "pillow" && f != "torchvision") throw_expected(env, fn, "opts.filter", "'pillow' or 'torchvision'", v);
  return f == "pillow" ? media::ResizeFilter::Pillow : media::ResizeFilter::TorchVision;
}

/**
 * `opts.device`: 'cpu' (also when absent) or 'cuda' (our CUDA kernels, kernels/kernels.h). Returns
 * true for 'cuda'; throws DEVICE_UNAVAILABLE when this build or machine cannot run them.
 */
inline bool cuda_device_arg(Napi::Env env, const char* fn, Napi::Object opts) {
  Napi::Value v = opts.Get("device");
  if (v.IsUndefined()) return false;
  const std::string d = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  if (d != "cpu" && d != "cuda") throw_expected(env, fn, "opts.device", "'cpu' or 'cuda'", v);
  if (d == "cpu") return false;
  const std::string why = kernels::cuda_unavailable_reason();
  if (!why.empty()) throw make_error(env, "DEVICE_UNAVAILABLE", std::string(fn) + ": device 'cuda': " + why);
  return true;
}

}  // namespace vl3::addon::args
