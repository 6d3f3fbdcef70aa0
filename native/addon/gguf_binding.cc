// readGguf(path) -> Promise<{ metadata, tensors }>; readGgufTensor(path, name) -> Promise<Float32Array>
// Inspection of model files (used by tests, `videollama3 inspect` and the converter's checks).
#include <memory>

#include "addon/async.h"
#include "addon/bindings.h"
#include "model/gguf_file.h"

namespace vl3::addon {
namespace {

Napi::Value to_js(Napi::Env env, const GgufValue& v) {
  using K = GgufValue::Kind;
  switch (v.kind) {
    case K::Int: return Napi::Number::New(env, static_cast<double>(v.i));
    case K::UInt: return Napi::Number::New(env, static_cast<double>(v.u));
    case K::Float: return Napi::Number::New(env, v.f);
    case K::Bool: return Napi::Boolean::New(env, v.b);
    case K::Str: return Napi::String::New(env, v.s);
    case K::StrArray: {
      Napi::Array a = Napi::Array::New(env, v.strs.size());
      for (size_t i = 0; i < v.strs.size(); ++i) a.Set(static_cast<uint32_t>(i), Napi::String::New(env, v.strs[i]));
      return a;
    }
    case K::FloatArray: {
      Napi::Array a = Napi::Array::New(env, v.floats.size());
      for (size_t i = 0; i < v.floats.size(); ++i) a.Set(static_cast<uint32_t>(i), Napi::Number::New(env, v.floats[i]));
      return a;
    }
    case K::BoolArray: {
      Napi::Array a = Napi::Array::New(env, v.ints.size());
      for (size_t i = 0; i < v.ints.size(); ++i) a.Set(static_cast<uint32_t>(i), Napi::Boolean::New(env, v.ints[i] != 0));
      return a;
    }
    default: {
      Napi::Array a = Napi::Array::New(env, v.ints.size());
      for (size_t i = 0; i < v.ints.size(); ++i) a.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(v.ints[i])));
      return a;
    }
  }
}

std::string path_arg(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsString()) throw_invalid(info.Env(), "Expected a file path string");
  return info[0].As<Napi::String>().Utf8Value();
}

Napi::Value ReadGguf(const Napi::CallbackInfo& info) {
  const std::string path = path_arg(info);
  using Ptr = std::shared_ptr<GgufFile>;
  return PromiseWorker<Ptr>::Start(
      info.Env(), [path]() { return std::make_shared<GgufFile>(path); },
      [](Napi::Env env, Ptr& f) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        Napi::Object meta = Napi::Object::New(env);
        for (const auto& [k, v] : f->metadata()) meta.Set(k, to_js(env, v));
        Napi::Array tensors = Napi::Array::New(env, f->tensors().size());
        for (size_t i = 0; i < f->tensors().size(); ++i) {
          const GgufTensorInfo& t = f->tensors()[i];
          Napi::Object o = Napi::Object::New(env);
          o.Set("name", t.name);
          o.Set("type", ggml_type_name(t.type));
          Napi::Array shape = Napi::Array::New(env, static_cast<size_t>(t.n_dims));
          for (int d = 0; d < t.n_dims; ++d) shape.Set(static_cast<uint32_t>(d), static_cast<double>(t.ne[d]));
          o.Set("shape", shape);
          o.Set("offset", static_cast<double>(t.offset));
          o.Set("byteLength", static_cast<double>(t.nbytes));
          tensors.Set(static_cast<uint32_t>(i), o);
        }
        out.Set("metadata", meta);
        out.Set("tensors", tensors);
        out.Set("fileSize", static_cast<double>(f->file_size()));
        return out;
      });
}

Napi::Value ReadGgufTensor(const Napi::CallbackInfo& info) {
  const std::string path = path_arg(info);
  if (info.Length() < 2 || !info[1].IsString()) throw_invalid(info.Env(), "Expected a tensor name string");
  const std::string name = info[1].As<Napi::String>().Utf8Value();
  using Data = std::shared_ptr<std::vector<float>>;
  return PromiseWorker<Data>::Start(
      info.Env(),
      [path, name]() {
        GgufFile f(path);
        const GgufTensorInfo* t = f.find_tensor(name);
        check(t != nullptr, ErrorCode::InvalidArgument, format("%s has no tensor named %s", path.c_str(), name.c_str()));
        return std::make_shared<std::vector<float>>(f.read_f32(*t));
      },
      [](Napi::Env env, Data& d) -> Napi::Value { return to_f32(env, *d); });
}

}  // namespace

void RegisterGguf(Napi::Env env, Napi::Object exports) {
  exports.Set("readGguf", Napi::Function::New(env, ReadGguf, "readGguf"));
  exports.Set("readGgufTensor", Napi::Function::New(env, ReadGgufTensor, "readGgufTensor"));
}

}  // namespace vl3::addon
