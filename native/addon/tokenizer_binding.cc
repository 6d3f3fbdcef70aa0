// loadTokenizer(path) -> Promise<NativeTokenizer>: the Qwen2 tokenizer of an llm.gguf on its own,
// without the weights (model/tokenizer.h). The returned object holds the tokenizer through its
// functions' closures; encode/decode are synchronous (microseconds per prompt) and const, so any
// number of calls may share one tokenizer.
#include <cstring>
#include <memory>

#include "addon/async.h"
#include "addon/bindings.h"
#include "model/gguf_file.h"
#include "model/tokenizer.h"

namespace vl3::addon {
namespace {

using TokenizerPtr = std::shared_ptr<const Tokenizer>;

/** Runs `fn`, turning C++ failures into coded JS errors. */
template <typename Fn>
auto guarded(Napi::Env env, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const vl3::Error& e) {
    throw make_error(env, e.code_name(), e.what());
  } catch (const std::bad_alloc&) {
    throw make_error(env, "OUT_OF_MEMORY", "Out of memory in the tokenizer");
  }
}

/** Token ids from an Int32Array or an array of integers. */
std::vector<int32_t> ids_arg(const Napi::CallbackInfo& info, size_t index) {
  Napi::Env env = info.Env();
  if (info.Length() > index && info[index].IsTypedArray()) {
    Napi::TypedArray ta = info[index].As<Napi::TypedArray>();
    if (ta.TypedArrayType() != napi_int32_array) throw_invalid(env, "Expected token ids as an Int32Array or number[]");
    Napi::Int32Array a = ta.As<Napi::Int32Array>();
    return std::vector<int32_t>(a.Data(), a.Data() + a.ElementLength());
  }
  if (info.Length() <= index || !info[index].IsArray()) {
    throw_invalid(env, "Expected token ids as an Int32Array or number[]");
  }
  Napi::Array arr = info[index].As<Napi::Array>();
  std::vector<int32_t> ids(arr.Length());
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Napi::Value v = arr.Get(i);
    const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1.5;
    // Out-of-range integers are left to Tokenizer::decode, which names the id.
    if (d != static_cast<double>(static_cast<int64_t>(d)) || d < INT32_MIN || d > INT32_MAX) {
      throw_invalid(env, format("Token id at index %u is not a 32-bit integer", i));
    }
    ids[i] = static_cast<int32_t>(d);
  }
  return ids;
}

Napi::Object Wrap(Napi::Env env, TokenizerPtr tok) {
  Napi::Object obj = Napi::Object::New(env);
  obj.Set("vocabSize", Napi::Number::New(env, tok->vocab_size()));
  obj.Set("encode", Napi::Function::New(
                        env,
                        [tok](const Napi::CallbackInfo& info) -> Napi::Value {
                          Napi::Env env = info.Env();
                          if (info.Length() < 1 || !info[0].IsString()) throw_invalid(env, "Expected text as a string");
                          if (info.Length() < 2 || !info[1].IsBoolean()) {
                            throw_invalid(env, "Expected parseSpecial as a boolean");
                          }
                          // Utf8Value replaces lone surrogates with U+FFFD, so the bytes are valid UTF-8.
                          const std::string text = info[0].As<Napi::String>().Utf8Value();
                          const bool special = info[1].As<Napi::Boolean>().Value();
                          const std::vector<int32_t> ids = guarded(env, [&] { return tok->encode(text, special); });
                          Napi::Int32Array out = Napi::Int32Array::New(env, ids.size());
                          if (!ids.empty()) std::memcpy(out.Data(), ids.data(), ids.size() * sizeof(int32_t));
                          return out;
                        },
                        "encode"));
  obj.Set("decode", Napi::Function::New(
                        env,
                        [tok](const Napi::CallbackInfo& info) -> Napi::Value {
                          Napi::Env env = info.Env();
                          const std::vector<int32_t> ids = ids_arg(info, 0);
                          const std::string bytes = guarded(env, [&] { return tok->decode(ids.data(), ids.size()); });
                          return Napi::Buffer<char>::Copy(env, bytes.data(), bytes.size());
                        },
                        "decode"));
  obj.Set("tokenId", Napi::Function::New(
                         env,
                         [tok](const Napi::CallbackInfo& info) -> Napi::Value {
                           Napi::Env env = info.Env();
                           if (info.Length() < 1 || !info[0].IsString()) {
                             throw_invalid(env, "Expected token text as a string");
                           }
                           return Napi::Number::New(env, tok->token_id(info[0].As<Napi::String>().Utf8Value()));
                         },
                         "tokenId"));
  return obj;
}

Napi::Value LoadTokenizer(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsString()) throw_invalid(info.Env(), "Expected the path of an llm.gguf file");
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  return PromiseWorker<TokenizerPtr>::Start(
      info.Env(),
      [path]() -> TokenizerPtr {
        const GgufFile file(path);
        return std::make_shared<const Tokenizer>(file);
      },
      [](Napi::Env env, TokenizerPtr& tok) -> Napi::Value { return Wrap(env, tok); });
}

}  // namespace

void RegisterTokenizer(Napi::Env env, Napi::Object exports) {
  exports.Set("loadTokenizer", Napi::Function::New(env, LoadTokenizer, "loadTokenizer"));
}

}  // namespace vl3::addon
