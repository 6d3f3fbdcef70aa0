// benchMatmul({ type, m, n, k, threads, reps }) -> Promise<{ secondsPerRep, gflops }>
#include "addon/async.h"
#include "addon/bindings.h"
#include "bench/matmul_bench.h"

namespace vl3::addon {
namespace {

int int_field(Napi::Object o, const char* name, int fallback) {
  Napi::Value v = o.Get(name);
  if (v.IsUndefined()) return fallback;
  if (!v.IsNumber()) throw_invalid(o.Env(), std::string("Expected integer for ") + name);
  return v.As<Napi::Number>().Int32Value();
}

Napi::Value BenchMatmul(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsObject()) throw_invalid(info.Env(), "benchMatmul expects an options object");
  Napi::Object o = info[0].As<Napi::Object>();
  Napi::Value t = o.Get("type");
  if (!t.IsString()) throw_invalid(info.Env(), "Expected ggml type name for type");
  const std::string type = t.As<Napi::String>().Utf8Value();
  const int m = int_field(o, "m", 1), n = int_field(o, "n", 4096), k = int_field(o, "k", 4096);
  const int threads = int_field(o, "threads", 1), reps = int_field(o, "reps", 5);
  return PromiseWorker<bench::MatmulResult>::Start(
      info.Env(), [=]() { return bench::run_matmul(type, m, n, k, threads, reps); },
      [](Napi::Env env, bench::MatmulResult& r) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        out.Set("secondsPerRep", r.seconds_per_rep);
        out.Set("gflops", r.gflops);
        return out;
      });
}

}  // namespace

void RegisterBench(Napi::Env env, Napi::Object exports) {
  exports.Set("benchMatmul", Napi::Function::New(env, BenchMatmul, "benchMatmul"));
}

}  // namespace vl3::addon
