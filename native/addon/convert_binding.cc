// writeGguf(path, kvs, tensors, { threads, onProgress }) -> { promise, cancel() }
// The heavy part of `videollama3 convert`: streams checkpoint bytes into a GGUF file.
#include "addon/bindings.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <memory>

#include "addon/async.h"
#include "convert/gguf_writer.h"

namespace vl3::addon {
namespace {

using convert::KvEntry;
using convert::SourceDtype;
using convert::TensorPlan;

std::string get_string(Napi::Object o, const char* field, const std::string& where) {
  Napi::Value v = o.Get(field);
  if (!v.IsString()) throw_invalid(o.Env(), "Expected string for " + where + "." + field);
  return v.As<Napi::String>().Utf8Value();
}

double get_number(Napi::Object o, const char* field, const std::string& where) {
  Napi::Value v = o.Get(field);
  if (!v.IsNumber()) throw_invalid(o.Env(), "Expected number for " + where + "." + field);
  return v.As<Napi::Number>().DoubleValue();
}

uint64_t get_uint(Napi::Object o, const char* field, const std::string& where) {
  const double d = get_number(o, field, where);
  if (!(d >= 0) || d > 9007199254740991.0 || d != static_cast<double>(static_cast<uint64_t>(d))) {
    throw_invalid(o.Env(), "Expected non-negative integer for " + where + "." + field);
  }
  return static_cast<uint64_t>(d);
}

KvEntry parse_kv(Napi::Env env, Napi::Value item, size_t index) {
  if (!item.IsObject()) throw_invalid(env, "Expected object for kvs[" + std::to_string(index) + "]");
  Napi::Object o = item.As<Napi::Object>();
  const std::string where = "kvs[" + std::to_string(index) + "]";
  KvEntry kv;
  kv.key = get_string(o, "key", where);
  const std::string type = get_string(o, "type", where);
  Napi::Value v = o.Get("value");
  auto array = [&]() -> Napi::Array {
    if (!v.IsArray()) throw_invalid(env, "Expected array value for " + kv.key);
    return v.As<Napi::Array>();
  };
  auto number = [&](Napi::Value x) -> double {
    if (!x.IsNumber()) throw_invalid(env, "Expected numbers in value of " + kv.key);
    return x.As<Napi::Number>().DoubleValue();
  };
  // Values must fit their GGUF type: a cast would wrap them silently (or be undefined).
  auto integer = [&](Napi::Value x, double lo, double hi) -> double {
    const double d = number(x);
    if (!(d >= lo && d <= hi) || d != std::floor(d)) {
      throw_invalid(env, format("Expected integer between %.0f and %.0f in value of %s but received %g", lo, hi,
                                kv.key.c_str(), d));
    }
    return d;
  };
  auto f32 = [&](Napi::Value x) -> double {
    const double d = number(x);
    if (!std::isfinite(static_cast<float>(d))) {
      throw_invalid(env, format("Expected finite 32-bit float in value of %s but received %g", kv.key.c_str(), d));
    }
    return d;
  };
  constexpr double kI32Min = -2147483648.0, kI32Max = 2147483647.0, kU32Max = 4294967295.0;
  constexpr double kJsIntMax = 9007199254740991.0;  // 2^53 - 1, the largest integer a JS number holds exactly
  if (type == "u32" || type == "u64") {
    kv.kind = type == "u32" ? KvEntry::Kind::U32 : KvEntry::Kind::U64;
    kv.u = static_cast<uint64_t>(integer(v, 0, type == "u32" ? kU32Max : kJsIntMax));
  } else if (type == "i32") {
    kv.kind = KvEntry::Kind::I32;
    kv.i = static_cast<int64_t>(integer(v, kI32Min, kI32Max));
  } else if (type == "f32") {
    kv.kind = KvEntry::Kind::F32;
    kv.f = f32(v);
  } else if (type == "bool") {
    kv.kind = KvEntry::Kind::Bool;
    kv.b = v.ToBoolean().Value();
  } else if (type == "str") {
    if (!v.IsString()) throw_invalid(env, "Expected string value for " + kv.key);
    kv.kind = KvEntry::Kind::Str;
    kv.s = v.As<Napi::String>().Utf8Value();
  } else if (type == "str[]") {
    kv.kind = KvEntry::Kind::ArrStr;
    Napi::Array a = array();
    kv.strs.reserve(a.Length());
    for (uint32_t i = 0; i < a.Length(); ++i) {
      Napi::Value x = a.Get(i);
      if (!x.IsString()) throw_invalid(env, "Expected strings in value of " + kv.key);
      kv.strs.push_back(x.As<Napi::String>().Utf8Value());
    }
  } else if (type == "i32[]" || type == "u32[]" || type == "f32[]") {
    Napi::Array a = array();
    kv.kind = type == "i32[]" ? KvEntry::Kind::ArrI32 : type == "u32[]" ? KvEntry::Kind::ArrU32 : KvEntry::Kind::ArrF32;
    for (uint32_t i = 0; i < a.Length(); ++i) {
      const Napi::Value x = a.Get(i);
      if (kv.kind == KvEntry::Kind::ArrI32) kv.i32s.push_back(static_cast<int32_t>(integer(x, kI32Min, kI32Max)));
      else if (kv.kind == KvEntry::Kind::ArrU32) kv.u32s.push_back(static_cast<uint32_t>(integer(x, 0, kU32Max)));
      else kv.f32s.push_back(static_cast<float>(f32(x)));
    }
  } else {
    throw_invalid(env, "Unknown metadata type '" + type + "' for " + kv.key);
  }
  return kv;
}

TensorPlan parse_tensor(Napi::Env env, Napi::Value item, size_t index) {
  const std::string where = "tensors[" + std::to_string(index) + "]";
  if (!item.IsObject()) throw_invalid(env, "Expected object for " + where);
  Napi::Object o = item.As<Napi::Object>();
  TensorPlan t;
  t.name = get_string(o, "name", where);
  const std::string type = get_string(o, "type", where);
  if (!convert::parse_ggml_type(type, &t.type)) throw_invalid(env, "Unknown ggml type '" + type + "' for " + t.name);
  Napi::Value shape = o.Get("shape");
  if (!shape.IsArray()) throw_invalid(env, "Expected array for " + where + ".shape");
  Napi::Array sa = shape.As<Napi::Array>();
  for (uint32_t i = 0; i < sa.Length(); ++i) {
    Napi::Value d = sa.Get(i);
    if (!d.IsNumber()) throw_invalid(env, "Expected integers in " + where + ".shape");
    t.ne.push_back(d.As<Napi::Number>().Int64Value());
  }
  t.src.file = get_string(o, "file", where);
  t.src.offset = get_uint(o, "offset", where);
  t.src.nbytes = get_uint(o, "byteLength", where);
  const std::string dtype = get_string(o, "dtype", where);
  if (dtype == "F32") t.src.dtype = SourceDtype::F32;
  else if (dtype == "F16") t.src.dtype = SourceDtype::F16;
  else if (dtype == "BF16") t.src.dtype = SourceDtype::BF16;
  else throw_invalid(env, "Unsupported source dtype '" + dtype + "' for " + t.name + " (expected F32, F16 or BF16)");
  return t;
}

struct ProgressEvent {
  size_t index, count;
  std::string name;
  uint64_t done, total;
};

Napi::Value WriteGguf(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsArray() || !info[2].IsArray()) {
    throw_invalid(env, "writeGguf(path, kvs, tensors, options?) expects a string and two arrays");
  }
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  auto kvs = std::make_shared<std::vector<KvEntry>>();
  auto tensors = std::make_shared<std::vector<TensorPlan>>();
  Napi::Array ka = info[1].As<Napi::Array>();
  for (uint32_t i = 0; i < ka.Length(); ++i) kvs->push_back(parse_kv(env, ka.Get(i), i));
  Napi::Array ta = info[2].As<Napi::Array>();
  for (uint32_t i = 0; i < ta.Length(); ++i) tensors->push_back(parse_tensor(env, ta.Get(i), i));

  int threads = 1;
  std::shared_ptr<Napi::ThreadSafeFunction> tsfn;
  if (info.Length() > 3 && info[3].IsObject()) {
    Napi::Object opts = info[3].As<Napi::Object>();
    if (opts.Get("threads").IsNumber()) threads = std::max(1, opts.Get("threads").As<Napi::Number>().Int32Value());
    Napi::Value cb = opts.Get("onProgress");
    if (cb.IsFunction()) {
      tsfn = std::shared_ptr<Napi::ThreadSafeFunction>(
          new Napi::ThreadSafeFunction(Napi::ThreadSafeFunction::New(env, cb.As<Napi::Function>(), "vl3.writeGguf.progress", 0, 1)),
          [](Napi::ThreadSafeFunction* f) {
            f->Release();
            delete f;
          });
    }
  }
  auto cancel = std::make_shared<std::atomic<bool>>(false);

  auto work = [path, kvs, tensors, threads, tsfn, cancel]() -> bool {
    convert::WriteOptions wo;
    wo.threads = threads;
    wo.cancel = cancel.get();
    if (tsfn) {
      auto last = std::make_shared<std::chrono::steady_clock::time_point>();
      wo.on_progress = [tsfn, last](const convert::WriteProgress& p) {
        const auto now = std::chrono::steady_clock::now();
        const bool final_chunk = p.bytes_done == p.bytes_total;
        if (!final_chunk && now - *last < std::chrono::milliseconds(100)) return;
        *last = now;
        auto* ev = new ProgressEvent{p.tensor_index, p.tensor_count, *p.tensor_name, p.bytes_done, p.bytes_total};
        const napi_status st = tsfn->NonBlockingCall(ev, [](Napi::Env env, Napi::Function fn, ProgressEvent* e) {
          Napi::Object o = Napi::Object::New(env);
          o.Set("tensor", e->name);
          o.Set("tensorIndex", static_cast<double>(e->index));
          o.Set("tensorCount", static_cast<double>(e->count));
          o.Set("bytesDone", static_cast<double>(e->done));
          o.Set("bytesTotal", static_cast<double>(e->total));
          delete e;
          fn.Call({o});
        });
        if (st != napi_ok) delete ev;
      };
    }
    convert::write_gguf(path, *kvs, *tensors, wo);
    return true;
  };
  Napi::Promise promise = PromiseWorker<bool>::Start(env, work, [](Napi::Env env, bool&) { return env.Undefined(); });
  Napi::Object handle = Napi::Object::New(env);
  handle.Set("promise", promise);
  handle.Set("cancel", Napi::Function::New(env, [cancel](const Napi::CallbackInfo& ci) {
               cancel->store(true);
               return ci.Env().Undefined();
             }));
  return handle;
}

}  // namespace

void RegisterConvert(Napi::Env env, Napi::Object exports) {
  exports.Set("writeGguf", Napi::Function::New(env, WriteGguf, "writeGguf"));
}

}  // namespace vl3::addon
