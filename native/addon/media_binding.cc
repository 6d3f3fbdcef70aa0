// preprocessImage(rgb, width, height, opts{ ..., device?: 'cpu' | 'cuda' })
//   -> Promise<{ pixels, gridH, gridW, resizedWidth, resizedHeight }>   ('cuda': kernels::preprocess_cuda)
// resizeBicubic(rgb, width, height, outWidth, outHeight) -> Buffer   (sync; for tests)
// smartResize(height, width, factor, minPixels, maxPixels) -> { height, width }   (sync)
// Image preprocessing of decoded RGB pixels (native/media/image.h); decoding is lib/media/image.ts.
#include <cmath>
#include <cstring>
#include <string>

#include "addon/async.h"
#include "addon/args.h"
#include "addon/bindings.h"
#include "media/image.h"

namespace vl3::addon {
namespace {

using namespace args;  // NOLINT: argument helpers

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
  const media::PreprocessFn accel = cuda_device_arg(env, fn, o) ? kernels::preprocess_cuda : nullptr;

  auto shared = std::make_shared<media::RgbImage>(std::move(img));
  return PromiseWorker<media::PreprocessedImage>::Start(
      env, [shared, b, accel]() { return media::preprocess_image(*shared, b, accel); },
      [](Napi::Env env, media::PreprocessedImage& r) -> Napi::Value {
        Napi::Float32Array pixels = to_f32(env, r.pixels);
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
