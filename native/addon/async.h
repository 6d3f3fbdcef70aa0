// Promise-returning background work for the addon, and vl3::Error -> JS error conversion.
// Work runs on libuv's thread pool, never on the JavaScript thread.
#pragma once

#include <napi.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace vl3::addon {

/** A JS Error with `code` set to the vl3 error code name (lib/binding.ts wraps it). */
inline Napi::Error make_error(Napi::Env env, const std::string& code, const std::string& message) {
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, code));
  return err;
}

/** A new Float32Array holding a copy of `v`. */
inline Napi::Float32Array to_f32(Napi::Env env, const std::vector<float>& v) {
  Napi::Float32Array a = Napi::Float32Array::New(env, v.size());
  std::copy(v.begin(), v.end(), a.Data());
  return a;
}

/** Throws a JS TypeError-like INVALID_ARGUMENT error (for argument checks on the JS thread). */
[[noreturn]] inline void throw_invalid(Napi::Env env, const std::string& message) {
  throw make_error(env, "INVALID_ARGUMENT", message);
}

/**
 * Runs `work` off the JS thread; resolves with `done(env, result)`. Any vl3::Error (or other
 * exception) rejects the promise with a coded error.
 */
template <typename Result>
class PromiseWorker : public Napi::AsyncWorker {
 public:
  using Work = std::function<Result()>;
  using Done = std::function<Napi::Value(Napi::Env, Result&)>;

  static Napi::Promise Start(Napi::Env env, Work work, Done done) {
    auto* w = new PromiseWorker(env, std::move(work), std::move(done));
    Napi::Promise p = w->deferred_.Promise();
    w->Queue();
    return p;
  }

 protected:
  void Execute() override {
    try {
      result_ = work_();
    } catch (const vl3::Error& e) {
      code_ = e.code_name();
      SetError(e.what());
    } catch (const std::bad_alloc&) {
      code_ = "OUT_OF_MEMORY";
      SetError("Out of memory");
    } catch (const std::exception& e) {
      code_ = "INTERNAL";
      SetError(e.what());
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    try {
      deferred_.Resolve(done_(env, result_));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }
  void OnError(const Napi::Error& e) override {
    deferred_.Reject(make_error(Env(), code_, e.Message()).Value());
  }

 private:
  PromiseWorker(Napi::Env env, Work work, Done done)
      : Napi::AsyncWorker(env), work_(std::move(work)), done_(std::move(done)), deferred_(Napi::Promise::Deferred::New(env)) {}

  Work work_;
  Done done_;
  Napi::Promise::Deferred deferred_;
  Result result_{};
  std::string code_ = "INTERNAL";
};

}  // namespace vl3::addon
