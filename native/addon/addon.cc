// Module entry: build facts, the GGUF name table, and the component bindings.
#include <napi.h>

#if defined(_WIN32)
#include <windows.h>  // NOMINMAX, WIN32_LEAN_AND_MEAN: CMakeLists.txt defines them for the whole build
#else
#include <dlfcn.h>
#endif

#include "addon/bindings.h"
#include "common/status.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "ggml.h"
#include "model/gguf_names.h"

#ifndef VL3_GGML_STAMP
#define VL3_GGML_STAMP "unknown"
#endif

namespace vl3::addon {
namespace {

const char* file_name(names::ModelFile f) { return f == names::ModelFile::Llm ? "llm" : "vision"; }
const char* layout_name(names::Layout l) { return l == names::Layout::FlattenConv ? "flatten-conv" : "as-is"; }

Napi::Object NamesTable(Napi::Env env) {
  Napi::Object out = Napi::Object::New(env);
  Napi::Array tensors = Napi::Array::New(env, names::kTensorCount);
  for (size_t i = 0; i < names::kTensorCount; ++i) {
    const names::TensorName& t = names::kTensors[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("gguf", t.gguf);
    o.Set("hfNative", t.hf_native);
    o.Set("hfOrig", t.hf_orig);
    o.Set("file", file_name(t.file));
    o.Set("perLayer", t.per_layer);
    o.Set("optional", t.optional);
    o.Set("layout", layout_name(t.layout));
    tensors.Set(static_cast<uint32_t>(i), o);
  }
  Napi::Object keys = Napi::Object::New(env);
#define VL3_EXPORT_KEY(id, str) keys.Set(#id, str);
  VL3_GGUF_KEYS(VL3_EXPORT_KEY)
#undef VL3_EXPORT_KEY
  out.Set("tensors", tensors);
  out.Set("keys", keys);
  return out;
}

Napi::Object BuildInfo(Napi::Env env) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("ggml", VL3_GGML_STAMP);
  o.Set("cpuVariant", VL3_CPU_VARIANT);
  Napi::Array feats = Napi::Array::New(env);
  uint32_t n = 0;
  auto add = [&](const char* name, int has) {
    if (has) feats.Set(n++, name);
  };
  add("sse3", ggml_cpu_has_sse3());
  add("ssse3", ggml_cpu_has_ssse3());
  add("avx", ggml_cpu_has_avx());
  add("avx2", ggml_cpu_has_avx2());
  add("f16c", ggml_cpu_has_f16c());
  add("fma", ggml_cpu_has_fma());
  add("bmi2", ggml_cpu_has_bmi2());
  add("avx_vnni", ggml_cpu_has_avx_vnni());
  add("avx512", ggml_cpu_has_avx512());
  add("avx512_vbmi", ggml_cpu_has_avx512_vbmi());
  add("avx512_vnni", ggml_cpu_has_avx512_vnni());
  add("avx512_bf16", ggml_cpu_has_avx512_bf16());
  add("amx_int8", ggml_cpu_has_amx_int8());
  add("neon", ggml_cpu_has_neon());
  add("arm_fma", ggml_cpu_has_arm_fma());
  o.Set("cpuFeatures", feats);
  Napi::Array devices = Napi::Array::New(env);
  for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
    ggml_backend_dev_t dev = ggml_backend_dev_get(i);
    Napi::Object d = Napi::Object::New(env);
    d.Set("name", ggml_backend_dev_name(dev));
    d.Set("description", ggml_backend_dev_description(dev));
    const auto type = ggml_backend_dev_type(dev);
    d.Set("type", type == GGML_BACKEND_DEVICE_TYPE_GPU ? "gpu" : type == GGML_BACKEND_DEVICE_TYPE_CPU ? "cpu" : "other");
    devices.Set(static_cast<uint32_t>(i), d);
  }
  o.Set("devices", devices);
  return o;
}

// Keeps this library mapped for the life of the process. Node unloads an addon when the last
// environment that loaded it ends (a worker thread, say), and a session's background thread may
// still be returning from its last job then.
void pin_library() {
#if defined(_WIN32)
  HMODULE self = nullptr;
  GetModuleHandleExW(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_PIN,
                     reinterpret_cast<LPCWSTR>(&pin_library), &self);
#else
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&pin_library), &info) != 0 && info.dli_fname != nullptr) {
    dlopen(info.dli_fname, RTLD_LAZY | RTLD_NODELETE);  // one more reference, never dropped
  }
#endif
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  pin_library();
  vl3::install_ggml_hooks();
  exports.Set("buildInfo", BuildInfo(env));
  exports.Set("names", NamesTable(env));
  RegisterConvert(env, exports);
  RegisterGguf(env, exports);
  RegisterBench(env, exports);
  RegisterTokenizer(env, exports);
  RegisterMedia(env, exports);
  RegisterModel(env, exports);
  RegisterVideo(env, exports);
  RegisterKernels(env, exports);
  return exports;
}

}  // namespace vl3::addon

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return vl3::addon::Init(env, exports); }
NODE_API_MODULE(videollama3, InitModule)
