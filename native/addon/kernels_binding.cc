// kernels: our CUDA kernels beside their CPU references (native/kernels/kernels.h), for the tests
// that compare the two and for a device check.
//   kernels.cudaUnavailableReason() -> string ('' when the kernels can run here)
//   kernels.preprocess(rgb, width, height, opts{ outWidth, outHeight, filter, patchSize, mergeSize, mean, std, device })
//     -> Promise<{ pixels: Float32Array, resized: Buffer }>
//   kernels.keepMask(prev, cur, width, height, opts{ patchSize, mergeSize, threshold, mean, std, device })
//     -> Promise<Uint8Array>      (prev and cur: RGB bytes of two resized frames of width x height)
//   kernels.mergeTokens(x: Float32Array, rows, dim, merge, opts{ device }) -> Promise<Float32Array>
// device 'cpu' runs the CPU reference, 'cuda' the kernel (DEVICE_UNAVAILABLE when it cannot run).
//   kernels.int8Matmul() -> boolean (whether Q8_0/Q6_K/Q4_K matmuls use our packed CPU kernels here)
//   kernels.int8MatmulCheck(type, m, n, k, threads) -> Promise<{ ggml, packed, reference, rowsGgml, rowsPacked,
//     activations, activationsGgml }> (one random q8_0, q6_K or q4_K product three ways, and its
//     activations quantized by our quantizer and by ggml's; kernels/int8_matmul.h)
//   kernels.attentionF16() -> boolean (whether decode attention uses our CPU op here; kernels/attention.h)
//   kernels.attentionCheck(n, heads, kvHeads, headDim, positions, threads) -> Promise<{ ggml, ours, reference }>
//     (one random attention over an f16 cache three ways)
//   kernels.attentionAppendCheck(heads, kvHeads, headDim, positions, threads)
//     -> Promise<{ ggml, ours, reference, ggmlCache, oursCache, referenceCache }> (one decode step
//     with RoPE and the cache append in the op, three ways)
#include <array>
#include <cmath>
#include <memory>
#include <string>

#include "addon/args.h"
#include "addon/async.h"
#include "addon/bindings.h"
#include "bench/attention_check.h"
#include "bench/matmul_bench.h"
#include "kernels/attention.h"
#include "kernels/int8_matmul.h"
#include "kernels/kernels.h"
#include "media/video.h"

namespace vl3::addon {
namespace {

using namespace args;  // NOLINT: argument helpers

struct Preprocessed {
  std::vector<float> pixels;
  media::RgbImage resized;
};

Napi::Value Preprocess(const Napi::CallbackInfo& info) {
  constexpr const char* fn = "kernels.preprocess";
  Napi::Env env = info.Env();
  auto img = std::make_shared<media::RgbImage>(rgb_args(info, fn));
  Napi::Object o = options_arg(env, fn, info[3]);
  const int ow = static_cast<int>(integer_arg(env, fn, "opts.outWidth", o.Get("outWidth"), 1, 1 << 24));
  const int oh = static_cast<int>(integer_arg(env, fn, "opts.outHeight", o.Get("outHeight"), 1, 1 << 24));
  const int patch = static_cast<int>(integer_arg(env, fn, "opts.patchSize", o.Get("patchSize"), 1, 1024));
  const int merge = static_cast<int>(integer_arg(env, fn, "opts.mergeSize", o.Get("mergeSize"), 1, 64));
  std::array<float, 3> mean{}, sd{};
  triple_arg(env, fn, o, "mean", false, mean.data());
  triple_arg(env, fn, o, "std", true, sd.data());
  const bool gpu = cuda_device_arg(env, fn, o);
  const media::ResizeFilter filter = filter_arg(env, fn, o);
  return PromiseWorker<Preprocessed>::Start(
      env,
      [=]() {
        media::check_resize(*img, ow, oh);
        media::check_patchify(ow, oh, patch, merge);
        Preprocessed r;
        r.pixels.resize(static_cast<size_t>(oh / patch) * (ow / patch) * 3 * patch * patch);
        if (gpu) {
          kernels::preprocess_cuda(*img, ow, oh, filter, patch, merge, mean.data(), sd.data(), r.pixels.data(),
                                   &r.resized);
        } else {
          r.resized = media::resize_bicubic(*img, ow, oh, filter);
          media::patchify(r.resized, patch, merge, mean.data(), sd.data(), r.pixels.data());
        }
        return r;
      },
      [](Napi::Env env, Preprocessed& r) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        out.Set("pixels", to_f32(env, r.pixels));
        out.Set("resized", Napi::Buffer<uint8_t>::Copy(env, r.resized.data.data(), r.resized.data.size()));
        return out;
      });
}

Napi::Value KeepMask(const Napi::CallbackInfo& info) {
  constexpr const char* fn = "kernels.keepMask";
  Napi::Env env = info.Env();
  const int64_t w = integer_arg(env, fn, "width", info[2], 1, 1 << 24);
  const int64_t h = integer_arg(env, fn, "height", info[3], 1, 1 << 24);
  auto prev = std::make_shared<media::RgbImage>(rgb_image(env, fn, "prev", bytes_arg(env, fn, "prev", info[0]), w, h));
  auto cur = std::make_shared<media::RgbImage>(rgb_image(env, fn, "cur", bytes_arg(env, fn, "cur", info[1]), w, h));
  Napi::Object o = options_arg(env, fn, info[4]);
  const int patch = static_cast<int>(integer_arg(env, fn, "opts.patchSize", o.Get("patchSize"), 1, 1024));
  const int merge = static_cast<int>(integer_arg(env, fn, "opts.mergeSize", o.Get("mergeSize"), 1, 64));
  Napi::Value tv = o.Get("threshold");
  const double td = tv.IsNumber() ? tv.As<Napi::Number>().DoubleValue() : NAN;
  if (!std::isfinite(td) || td < 0) throw_expected(env, fn, "opts.threshold", "finite number >= 0", tv);
  std::array<float, 3> mean{}, sd{};
  triple_arg(env, fn, o, "mean", false, mean.data());
  triple_arg(env, fn, o, "std", true, sd.data());
  const bool gpu = cuda_device_arg(env, fn, o);
  const float threshold = static_cast<float>(td);
  return PromiseWorker<std::vector<uint8_t>>::Start(
      env,
      [=]() {
        return gpu ? kernels::keep_mask_cuda(*prev, *cur, patch, merge, threshold, mean.data(), sd.data())
                   : media::keep_mask(*prev, *cur, patch, merge, threshold, mean.data(), sd.data());
      },
      [](Napi::Env env, std::vector<uint8_t>& keep) -> Napi::Value {
        Napi::Uint8Array a = Napi::Uint8Array::New(env, keep.size());
        std::copy(keep.begin(), keep.end(), a.Data());
        return a;
      });
}

Napi::Value MergeTokens(const Napi::CallbackInfo& info) {
  constexpr const char* fn = "kernels.mergeTokens";
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    throw_expected(env, fn, "x", "Float32Array", info[0]);
  }
  Napi::Float32Array xa = info[0].As<Napi::Float32Array>();
  const int64_t rows = integer_arg(env, fn, "rows", info[1], 1, kMaxSafeInteger);
  const int64_t dim = integer_arg(env, fn, "dim", info[2], 1, kMaxSafeInteger);
  const int64_t m = integer_arg(env, fn, "merge", info[3], 1, 64);
  if (static_cast<double>(rows) * static_cast<double>(dim) != static_cast<double>(xa.ElementLength())) {
    throw_invalid(env, vl3::format("%s: x holds %zu values, not rows * dim = %lld * %lld", fn, xa.ElementLength(),
                                   static_cast<long long>(rows), static_cast<long long>(dim)));
  }
  const bool gpu = info[4].IsUndefined() ? false : cuda_device_arg(env, fn, options_arg(env, fn, info[4]));
  auto x = std::make_shared<std::vector<float>>(xa.Data(), xa.Data() + xa.ElementLength());
  return PromiseWorker<std::vector<float>>::Start(
      env,
      [=]() {
        const int64_t group = m * m;
        std::vector<float> out(rows % group == 0 ? static_cast<size_t>(rows / group * dim) : 0);
        if (gpu) {
          kernels::merge_tokens_cuda(x->data(), rows, dim, static_cast<int>(m), out.data());
        } else {
          kernels::merge_tokens_cpu(x->data(), rows, dim, static_cast<int>(m), out.data());
        }
        return out;
      },
      [](Napi::Env env, std::vector<float>& out) -> Napi::Value { return to_f32(env, out); });
}

Napi::Value Int8MatmulCheck(const Napi::CallbackInfo& info) {
  constexpr const char* fn = "kernels.int8MatmulCheck";
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw_expected(env, fn, "type", "'q8_0', 'q6_K' or 'q4_K'", info[0]);
  const std::string type = info[0].As<Napi::String>().Utf8Value();
  if (type != "q8_0" && type != "q6_K" && type != "q4_K") throw_expected(env, fn, "type", "'q8_0', 'q6_K' or 'q4_K'", info[0]);
  const auto m = static_cast<int>(integer_arg(env, fn, "m", info[1], 1, 4096));
  const auto n = static_cast<int>(integer_arg(env, fn, "n", info[2], 8, 65536));
  const auto k = static_cast<int>(integer_arg(env, fn, "k", info[3], 32, 65536));
  const auto threads = static_cast<int>(integer_arg(env, fn, "threads", info[4], 1, 64));
  return PromiseWorker<bench::PackedCheck>::Start(
      env, [=]() { return bench::check_packed(type, m, n, k, threads); },
      [](Napi::Env env, bench::PackedCheck& r) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        out.Set("ggml", to_f32(env, r.ggml));
        out.Set("packed", to_f32(env, r.packed));
        out.Set("rowsGgml", to_f32(env, r.rows_ggml));
        out.Set("rowsPacked", to_f32(env, r.rows_packed));
        out.Set("reference", to_f32(env, r.reference));
        out.Set("activations", Napi::Buffer<uint8_t>::Copy(env, r.activations.data(), r.activations.size()));
        out.Set("activationsGgml", Napi::Buffer<uint8_t>::Copy(env, r.activations_ggml.data(), r.activations_ggml.size()));
        return out;
      });
}

Napi::Value AttentionCheck(const Napi::CallbackInfo& info) {
  constexpr const char* fn = "kernels.attentionCheck";
  Napi::Env env = info.Env();
  const auto n = static_cast<int>(integer_arg(env, fn, "n", info[0], 1, 65536));
  const auto heads = static_cast<int>(integer_arg(env, fn, "heads", info[1], 1, 256));
  const auto kv_heads = static_cast<int>(integer_arg(env, fn, "kvHeads", info[2], 1, 256));
  const auto head_dim = static_cast<int>(integer_arg(env, fn, "headDim", info[3], 8, 1024));
  const auto positions = static_cast<int>(integer_arg(env, fn, "positions", info[4], 1, 65536));
  const auto threads = static_cast<int>(integer_arg(env, fn, "threads", info[5], 1, 64));
  return PromiseWorker<bench::AttentionCheck>::Start(
      env, [=]() { return bench::check_attention(n, heads, kv_heads, head_dim, positions, threads); },
      [](Napi::Env env, bench::AttentionCheck& r) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        out.Set("ggml", to_f32(env, r.ggml));
        out.Set("ours", to_f32(env, r.ours));
        out.Set("reference", to_f32(env, r.reference));
        return out;
      });
}

Napi::Value AttentionAppendCheck(const Napi::CallbackInfo& info) {
  constexpr const char* fn = "kernels.attentionAppendCheck";
  Napi::Env env = info.Env();
  const auto heads = static_cast<int>(integer_arg(env, fn, "heads", info[0], 1, 256));
  const auto kv_heads = static_cast<int>(integer_arg(env, fn, "kvHeads", info[1], 1, 256));
  const auto head_dim = static_cast<int>(integer_arg(env, fn, "headDim", info[2], 8, 1024));
  const auto positions = static_cast<int>(integer_arg(env, fn, "positions", info[3], 1, 65536));
  const auto threads = static_cast<int>(integer_arg(env, fn, "threads", info[4], 1, 64));
  return PromiseWorker<bench::AttentionAppendCheck>::Start(
      env, [=]() { return bench::check_attention_append(heads, kv_heads, head_dim, positions, threads); },
      [](Napi::Env env, bench::AttentionAppendCheck& r) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        out.Set("ggml", to_f32(env, r.ggml));
        out.Set("ours", to_f32(env, r.ours));
        out.Set("reference", to_f32(env, r.reference));
        out.Set("ggmlCache", to_f32(env, r.ggml_cache));
        out.Set("oursCache", to_f32(env, r.ours_cache));
        out.Set("referenceCache", to_f32(env, r.reference_cache));
        return out;
      });
}

}  // namespace

void RegisterKernels(Napi::Env env, Napi::Object exports) {
  Napi::Object k = Napi::Object::New(env);
  k.Set("cudaUnavailableReason",
        Napi::Function::New(
            env, [](const Napi::CallbackInfo& info) -> Napi::Value {
              return Napi::String::New(info.Env(), kernels::cuda_unavailable_reason());
            },
            "cudaUnavailableReason"));
  k.Set("preprocess", Napi::Function::New(env, Preprocess, "preprocess"));
  k.Set("keepMask", Napi::Function::New(env, KeepMask, "keepMask"));
  k.Set("mergeTokens", Napi::Function::New(env, MergeTokens, "mergeTokens"));
  k.Set("int8Matmul",
        Napi::Function::New(
            env, [](const Napi::CallbackInfo& info) -> Napi::Value {
              return Napi::Boolean::New(info.Env(), kernels::int8_matmul_enabled());
            },
            "int8Matmul"));
  k.Set("int8MatmulCheck", Napi::Function::New(env, Int8MatmulCheck, "int8MatmulCheck"));
  k.Set("attentionF16", Napi::Function::New(
                            env, [](const Napi::CallbackInfo& info) -> Napi::Value {
                              return Napi::Boolean::New(info.Env(), kernels::attention_f16_enabled(128));
                            },
                            "attentionF16"));
  k.Set("attentionCheck", Napi::Function::New(env, AttentionCheck, "attentionCheck"));
  k.Set("attentionAppendCheck", Napi::Function::New(env, AttentionAppendCheck, "attentionAppendCheck"));
  exports.Set("kernels", k);
}

}  // namespace vl3::addon
