// The model and its sessions for JavaScript:
//   loadModel(llmPath, visionPath, { threads }) -> Promise<NativeModel>
//   NativeModel: info(), tokenize(text, parseSpecial), detokenize(ids), encodeImage(...), createSession(n)
//   NativeSession: evaluate(segments, { allLogits }), step(params), abort(), position, contextSize
// Every compute runs off the JS thread: on libuv's pool (PromiseWorker), and a step's forward pass
// on its session's own thread; JS sees coded errors, never a crash.
#include <algorithm>
#include <memory>

#include "addon/async.h"
#include "addon/bindings.h"
#include "model/videollama3.h"

namespace vl3::addon {
namespace {

using ModelPtr = std::shared_ptr<const VideoLlama3>;

int32_t int_option(Napi::Object o, const char* name, int32_t fallback) {
  Napi::Value v = o.Get(name);
  if (v.IsUndefined()) return fallback;
  if (!v.IsNumber()) throw_invalid(o.Env(), std::string("Expected number for ") + name);
  return v.As<Napi::Number>().Int32Value();
}

double num_option(Napi::Object o, const char* name, double fallback) {
  Napi::Value v = o.Get(name);
  if (v.IsUndefined()) return fallback;
  if (!v.IsNumber()) throw_invalid(o.Env(), std::string("Expected number for ") + name);
  return v.As<Napi::Number>().DoubleValue();
}

std::vector<int32_t> ids_from(Napi::Env env, Napi::Value v) {
  std::vector<int32_t> out;
  if (v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_int32_array) {
    Napi::Int32Array a = v.As<Napi::Int32Array>();
    out.assign(a.Data(), a.Data() + a.ElementLength());
  } else if (v.IsArray()) {
    Napi::Array a = v.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) {
      Napi::Value x = a.Get(i);
      if (!x.IsNumber()) throw_invalid(env, "Expected token ids (integers)");
      out.push_back(x.As<Napi::Number>().Int32Value());
    }
  } else {
    throw_invalid(env, "Expected an Int32Array or array of token ids");
  }
  return out;
}

Napi::Array logprobs_to_js(Napi::Env env, const std::vector<TokenLogprob>& top) {
  Napi::Array a = Napi::Array::New(env, top.size());
  for (size_t i = 0; i < top.size(); ++i) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("id", top[i].id);
    o.Set("logprob", top[i].logprob);
    a.Set(static_cast<uint32_t>(i), o);
  }
  return a;
}

/**
 * Per-environment constructors (each worker thread has its own), kept as instance data, and the
 * environment's sessions: when it is torn down (process exit, worker termination) their
 * background forward passes are aborted and awaited, so none runs on into the teardown.
 */
struct ModelClasses {
  Napi::FunctionReference model, session;
  std::vector<std::weak_ptr<Session>> sessions;

  void add(const std::shared_ptr<Session>& s) {
    sessions.erase(std::remove_if(sessions.begin(), sessions.end(), [](const auto& w) { return w.expired(); }),
                   sessions.end());
    sessions.push_back(s);
  }
  ~ModelClasses() {
    std::vector<std::shared_ptr<Session>> live;
    for (const auto& w : sessions) {
      if (auto s = w.lock()) live.push_back(std::move(s));
    }
    for (const auto& s : live) s->abort();  // all first: one may be waiting for another's graph
    for (const auto& s : live) s->shutdown();
  }
};
ModelClasses& classes(Napi::Env env) { return *env.GetInstanceData<ModelClasses>(); }

class NativeSession : public Napi::ObjectWrap<NativeSession> {
 public:
  static Napi::Function Define(Napi::Env env) {
    Napi::Function f = DefineClass(env, "NativeSession",
                                   {InstanceMethod("evaluate", &NativeSession::Evaluate),
                                    InstanceMethod("step", &NativeSession::Step),
                                    InstanceMethod("abort", &NativeSession::Abort),
                                    InstanceMethod("dispose", &NativeSession::Dispose),
                                    InstanceAccessor("position", &NativeSession::Position, nullptr),
                                    InstanceAccessor("contextSize", &NativeSession::ContextSize, nullptr),
                                    InstanceAccessor("cacheBytes", &NativeSession::CacheBytes, nullptr)});
    return f;
  }
  explicit NativeSession(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeSession>(info) {}
  std::shared_ptr<Session> session;

 private:
  std::shared_ptr<Session> live(Napi::Env env) {
    if (!session) throw_invalid(env, "This session was disposed");
    return session;
  }

  // evaluate(segments: Array<{ ids } | { embeddings, rows }>, { allLogits }) -> Promise<Float32Array | undefined>
  Napi::Value Evaluate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto s = live(env);
    if (info.Length() < 1 || !info[0].IsArray()) throw_invalid(env, "evaluate expects an array of segments");
    auto segs = std::make_shared<std::vector<PromptSegment>>();
    Napi::Array a = info[0].As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) {
      Napi::Value item = a.Get(i);
      if (!item.IsObject()) throw_invalid(env, "Expected segment objects");
      Napi::Object o = item.As<Napi::Object>();
      PromptSegment seg;
      if (o.Has("ids")) {
        seg.ids = ids_from(env, o.Get("ids"));
      } else {
        Napi::Value e = o.Get("embeddings");
        if (!e.IsTypedArray() || e.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
          throw_invalid(env, "Expected Float32Array embeddings in a vision segment");
        }
        Napi::Float32Array f = e.As<Napi::Float32Array>();
        seg.embeddings.assign(f.Data(), f.Data() + f.ElementLength());
        seg.rows = int_option(o, "rows", 0);
        if (seg.rows <= 0) throw_invalid(env, "Expected a positive row count in a vision segment");
      }
      segs->push_back(std::move(seg));
    }
    const bool all = info.Length() > 1 && info[1].IsObject() && info[1].As<Napi::Object>().Get("allLogits").ToBoolean();
    return PromiseWorker<std::vector<float>>::Start(
        env, [s, segs, all]() { return s->evaluate(*segs, all); },
        [all](Napi::Env env, std::vector<float>& out) -> Napi::Value {
          return all ? Napi::Value(to_f32(env, out)) : env.Undefined();
        });
  }

  // step({ temperature, topK, topP, minP, repetitionPenalty, seed, topLogprobs, stopIds, mask? }) -> Promise<{ id, top }>
  //   mask: Int32Array | Uint32Array of ceil(vocab / 32) words, bit set = token allowed (structured output)
  Napi::Value Step(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto s = live(env);
    SamplingParams p;
    int top = 0;
    std::vector<int32_t> stop;
    std::vector<uint32_t> mask;
    if (info.Length() > 0 && info[0].IsObject()) {
      Napi::Object o = info[0].As<Napi::Object>();
      p.temperature = static_cast<float>(num_option(o, "temperature", 0));
      p.top_k = int_option(o, "topK", 0);
      p.top_p = static_cast<float>(num_option(o, "topP", 1));
      p.min_p = static_cast<float>(num_option(o, "minP", 0));
      p.repetition_penalty = static_cast<float>(num_option(o, "repetitionPenalty", 1));
      p.seed = static_cast<uint64_t>(num_option(o, "seed", 0));
      top = int_option(o, "topLogprobs", 0);
      if (o.Has("stopIds")) stop = ids_from(env, o.Get("stopIds"));
      Napi::Value m = o.Get("mask");
      if (!m.IsUndefined()) {
        if (!m.IsTypedArray()) throw_invalid(env, "Expected an Int32Array or Uint32Array for mask");
        Napi::TypedArray ta = m.As<Napi::TypedArray>();
        if (ta.TypedArrayType() != napi_int32_array && ta.TypedArrayType() != napi_uint32_array) {
          throw_invalid(env, "Expected an Int32Array or Uint32Array for mask");
        }
        const auto* words = reinterpret_cast<const uint32_t*>(static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset());
        mask.assign(words, words + ta.ElementLength());
        if (mask.empty()) throw_invalid(env, "Expected a non-empty mask");
      }
    }
    return PromiseWorker<StepResult>::Start(
        env, [s, p, top, stop, mask = std::move(mask)]() { return s->step(p, top, stop, mask); },
        [](Napi::Env env, StepResult& r) -> Napi::Value {
          Napi::Object o = Napi::Object::New(env);
          o.Set("id", r.id);
          o.Set("top", logprobs_to_js(env, r.top));
          return o;
        });
  }

  Napi::Value Abort(const Napi::CallbackInfo& info) {
    if (session) session->abort();
    return info.Env().Undefined();
  }
  // dispose(): frees the KV cache (host or GPU memory) now instead of at garbage collection. The
  // last step's forward pass, which nobody will sample from, is aborted; a call still running
  // keeps its own reference until it returns.
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    if (session) session->abort();
    session.reset();
    return info.Env().Undefined();
  }
  Napi::Value Position(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), session ? static_cast<double>(session->position()) : 0);
  }
  Napi::Value ContextSize(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), session ? static_cast<double>(session->context_size()) : 0);
  }
  Napi::Value CacheBytes(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), session ? static_cast<double>(session->cache_bytes()) : 0);
  }
};

class NativeModel : public Napi::ObjectWrap<NativeModel> {
 public:
  static Napi::Function Define(Napi::Env env) {
    Napi::Function f = DefineClass(env, "NativeModel",
                                   {InstanceMethod("info", &NativeModel::Info),
                                    InstanceMethod("tokenize", &NativeModel::Tokenize),
                                    InstanceMethod("detokenize", &NativeModel::Detokenize),
                                    InstanceMethod("vocabulary", &NativeModel::Vocabulary),
                                    InstanceMethod("encodeImage", &NativeModel::EncodeImage),
                                    InstanceMethod("createSession", &NativeModel::CreateSession),
                                    InstanceMethod("dispose", &NativeModel::Dispose)});
    return f;
  }
  explicit NativeModel(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeModel>(info) {}
  ModelPtr model;

 private:
  ModelPtr live(Napi::Env env) {
    if (!model) throw make_error(env, "INVALID_ARGUMENT", "This model was disposed");
    return model;
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto m = live(env);
    const auto& t = m->llm().hparams();
    const auto& v = m->vision().hparams();
    const auto& p = m->preprocess();
    Napi::Object o = Napi::Object::New(env);
    Napi::Object llm = Napi::Object::New(env);
    llm.Set("vocabSize", static_cast<double>(t.n_vocab));
    llm.Set("hiddenSize", static_cast<double>(t.dim));
    llm.Set("layers", static_cast<double>(t.n_layers));
    llm.Set("heads", static_cast<double>(t.n_heads));
    llm.Set("kvHeads", static_cast<double>(t.n_kv_heads));
    llm.Set("trainContextSize", static_cast<double>(t.n_ctx_train));
    llm.Set("kvCacheType", ggml_type_name(m->llm().kv_type()));
    o.Set("llm", llm);
    Napi::Object vis = Napi::Object::New(env);
    vis.Set("hiddenSize", static_cast<double>(v.dim));
    vis.Set("layers", static_cast<double>(v.n_layers));
    vis.Set("heads", static_cast<double>(v.n_heads));
    vis.Set("patchSize", static_cast<double>(v.patch));
    o.Set("vision", vis);
    Napi::Object pre = Napi::Object::New(env);
    Napi::Array mean = Napi::Array::New(env, 3), sd = Napi::Array::New(env, 3);
    for (uint32_t c = 0; c < 3; ++c) {
      mean.Set(c, p.mean[c]);
      sd.Set(c, p.std[c]);
    }
    pre.Set("mean", mean);
    pre.Set("std", sd);
    pre.Set("imageMinPixels", static_cast<double>(p.image_min_pixels));
    pre.Set("imageMaxPixels", static_cast<double>(p.image_max_pixels));
    pre.Set("imageMergeSize", static_cast<double>(p.image_merge));
    pre.Set("videoMinPixels", static_cast<double>(p.video_min_pixels));
    pre.Set("videoMaxPixels", static_cast<double>(p.video_max_pixels));
    pre.Set("videoMergeSize", static_cast<double>(p.video_merge));
    pre.Set("fps", p.fps);
    pre.Set("minFrames", static_cast<double>(p.min_frames));
    pre.Set("maxFrames", static_cast<double>(p.max_frames));
    pre.Set("pruneThreshold", p.prune_threshold);
    pre.Set("useTokenCompression", p.use_token_compression);
    o.Set("preprocess", pre);
    o.Set("imageTokenId", m->image_token_id());
    o.Set("videoTokenId", m->video_token_id());
    Napi::Array eos = Napi::Array::New(env, m->eos_ids().size());
    for (size_t i = 0; i < m->eos_ids().size(); ++i) eos.Set(static_cast<uint32_t>(i), m->eos_ids()[i]);
    o.Set("eosIds", eos);
    o.Set("chatTemplate", m->chat_template());
    o.Set("weightBytes", static_cast<double>(m->weight_bytes()));
    o.Set("gpuLayers", static_cast<double>(m->device_name() == "CPU" ? 0 : m->llm().gpu_layers()));
    o.Set("device", m->device_name());
    o.Set("deviceNote", m->device_note());
    return o;
  }

  Napi::Value Tokenize(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto m = live(env);
    if (info.Length() < 1 || !info[0].IsString()) throw_invalid(env, "tokenize expects a string");
    const bool special = info.Length() > 1 && info[1].ToBoolean();
    std::vector<int32_t> ids;
    try {
      ids = m->tokenizer().encode(info[0].As<Napi::String>().Utf8Value(), special);
    } catch (const vl3::Error& e) {
      throw make_error(env, e.code_name(), e.what());
    }
    Napi::Int32Array out = Napi::Int32Array::New(env, ids.size());
    std::copy(ids.begin(), ids.end(), out.Data());
    return out;
  }

  Napi::Value Detokenize(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto m = live(env);
    if (info.Length() < 1) throw_invalid(env, "detokenize expects token ids");
    std::vector<int32_t> ids = ids_from(env, info[0]);
    std::string bytes;
    try {
      bytes = m->tokenizer().decode(ids.data(), ids.size());
    } catch (const vl3::Error& e) {
      throw make_error(env, e.code_name(), e.what());
    }
    return Napi::Buffer<char>::Copy(env, bytes.data(), bytes.size());
  }

  // vocabulary() -> { bytes: Buffer, offsets: Uint32Array (n + 1), special: Uint8Array (n) }: what
  // decode() emits for each token id (token i = bytes[offsets[i], offsets[i + 1])), and which ids
  // are control tokens (<|im_end|>, ...). n is the tokenizer's size (the logits may be longer).
  Napi::Value Vocabulary(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto m = live(env);
    const Tokenizer& t = m->tokenizer();
    const int32_t n = t.vocab_size();
    std::string all;
    Napi::Uint32Array offsets = Napi::Uint32Array::New(env, static_cast<size_t>(n) + 1);
    Napi::Uint8Array special = Napi::Uint8Array::New(env, static_cast<size_t>(n));
    offsets[0] = 0;
    for (int32_t i = 0; i < n; ++i) {
      all += t.decode(&i, 1);
      offsets[static_cast<size_t>(i) + 1] = static_cast<uint32_t>(all.size());
      special[static_cast<size_t>(i)] = t.is_special(i) ? 1 : 0;
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("bytes", Napi::Buffer<char>::Copy(env, all.data(), all.size()));
    o.Set("offsets", offsets);
    o.Set("special", special);
    return o;
  }

  struct EncodeResult {
    std::vector<float> embeddings;
    int64_t rows = 0, cols = 0;
    std::vector<std::tuple<std::string, std::vector<float>, int64_t, int64_t>> stages;
  };

  // encodeImage(pixels: Float32Array, gridH, gridW, merge, { stages, abort: AbortHandle }) -> Promise<{ embeddings, rows, cols, stages? }>
  Napi::Value EncodeImage(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto m = live(env);
    if (info.Length() < 4 || !info[0].IsTypedArray() || !info[1].IsNumber() || !info[2].IsNumber() || !info[3].IsNumber()) {
      throw_invalid(env, "encodeImage(pixels: Float32Array, gridH, gridW, merge, options?)");
    }
    Napi::TypedArray ta = info[0].As<Napi::TypedArray>();
    if (ta.TypedArrayType() != napi_float32_array) throw_invalid(env, "pixels must be a Float32Array");
    Napi::Float32Array px = ta.As<Napi::Float32Array>();
    const int64_t gh = info[1].As<Napi::Number>().Int64Value(), gw = info[2].As<Napi::Number>().Int64Value();
    const int64_t merge = info[3].As<Napi::Number>().Int64Value();
    const int64_t P = m->vision().hparams().patch_values();
    if (gh <= 0 || gw <= 0 || gh * gw > (1 << 20) || static_cast<int64_t>(px.ElementLength()) != gh * gw * P) {
      throw_invalid(env, "pixels must hold gridH·gridW rows of " + std::to_string(P) + " values");
    }
    auto pixels = std::make_shared<std::vector<float>>(px.Data(), px.Data() + px.ElementLength());
    bool want_stages = false;
    std::shared_ptr<std::atomic<bool>> abort_flag;
    if (info.Length() > 4 && info[4].IsObject()) {
      Napi::Object o = info[4].As<Napi::Object>();
      want_stages = o.Get("stages").ToBoolean();
      Napi::Value h = o.Get("abortHandle");
      if (h.IsExternal()) abort_flag = *h.As<Napi::External<std::shared_ptr<std::atomic<bool>>>>().Data();
    }
    return PromiseWorker<std::shared_ptr<EncodeResult>>::Start(
        env,
        [m, pixels, gh, gw, merge, want_stages, abort_flag]() {
          auto r = std::make_shared<EncodeResult>();
          StageSink sink = [&](const std::string& name, const float* d, int64_t rows, int64_t cols) {
            r->stages.emplace_back(name, std::vector<float>(d, d + rows * cols), rows, cols);
          };
          std::lock_guard<std::mutex> lock(m->compute_mutex());
          r->embeddings = m->vision().encode({pixels->data(), gh, gw, merge}, m->threads(), want_stages ? &sink : nullptr,
                                             abort_flag.get());
          r->cols = m->vision().projector().output_dim();
          r->rows = static_cast<int64_t>(r->embeddings.size()) / r->cols;
          return r;
        },
        [](Napi::Env env, std::shared_ptr<EncodeResult>& r) -> Napi::Value {
          Napi::Object o = Napi::Object::New(env);
          o.Set("embeddings", to_f32(env, r->embeddings));
          o.Set("rows", static_cast<double>(r->rows));
          o.Set("cols", static_cast<double>(r->cols));
          if (!r->stages.empty()) {
            Napi::Object st = Napi::Object::New(env);
            for (auto& [name, data, rows, cols] : r->stages) {
              Napi::Object e = Napi::Object::New(env);
              e.Set("data", to_f32(env, data));
              e.Set("rows", static_cast<double>(rows));
              e.Set("cols", static_cast<double>(cols));
              st.Set(name, e);
            }
            o.Set("stages", st);
          }
          return o;
        });
  }

  Napi::Value CreateSession(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto m = live(env);
    if (info.Length() < 1 || !info[0].IsNumber()) throw_invalid(env, "createSession(contextSize)");
    const int64_t n = info[0].As<Napi::Number>().Int64Value();
    Napi::Object obj = classes(env).session.New({});
    try {
      auto s = std::make_shared<Session>(m, n);
      classes(env).add(s);
      NativeSession::Unwrap(obj)->session = std::move(s);
    } catch (const vl3::Error& e) {
      throw make_error(env, e.code_name(), e.what());
    } catch (const std::bad_alloc&) {
      throw make_error(env, "OUT_OF_MEMORY", "Out of memory allocating the KV cache");
    }
    return obj;
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    model.reset();  // freed once the last running job and session release it
    return info.Env().Undefined();
  }
};

// loadModel(llmPath, visionPath, { threads, device, gpuLayers }) -> Promise<NativeModel>
//   gpuLayers: decoder layers on the GPU (-1 or absent: all of them)
Napi::Value LoadModel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) {
    throw_invalid(env, "loadModel(llmPath, visionPath, options?)");
  }
  const std::string llm = info[0].As<Napi::String>().Utf8Value(), vision = info[1].As<Napi::String>().Utf8Value();
  int threads = 1;
  Device device = Device::Cpu;
  int64_t gpu_layers = -1;
  if (info.Length() > 2 && info[2].IsObject()) {
    Napi::Object o = info[2].As<Napi::Object>();
    threads = int_option(o, "threads", 1);
    gpu_layers = int_option(o, "gpuLayers", -1);
    Napi::Value d = o.Get("device");
    if (!d.IsUndefined()) {
      const std::string name = d.IsString() ? d.As<Napi::String>().Utf8Value() : "";
      if (name == "auto") device = Device::Auto;
      else if (name == "cuda") device = Device::Cuda;
      else if (name != "cpu") throw_invalid(env, "device must be 'auto', 'cpu' or 'cuda'");
    }
  }
  return PromiseWorker<ModelPtr>::Start(
      env,
      [llm, vision, threads, device, gpu_layers]() {
        return std::make_shared<const VideoLlama3>(llm, vision, threads, device, gpu_layers);
      },
      [](Napi::Env env, ModelPtr& m) -> Napi::Value {
        Napi::Object obj = classes(env).model.New({});
        NativeModel::Unwrap(obj)->model = m;
        return obj;
      });
}

// createAbortHandle() -> External: raised by abortHandle(h) from JS, read by running graphs.
Napi::Value CreateAbortHandle(const Napi::CallbackInfo& info) {
  auto flag = new std::shared_ptr<std::atomic<bool>>(std::make_shared<std::atomic<bool>>(false));
  return Napi::External<std::shared_ptr<std::atomic<bool>>>::New(
      info.Env(), flag, [](Napi::Env, std::shared_ptr<std::atomic<bool>>* p) { delete p; });
}

Napi::Value RaiseAbortHandle(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsExternal()) throw_invalid(info.Env(), "raiseAbort(handle)");
  (*info[0].As<Napi::External<std::shared_ptr<std::atomic<bool>>>>().Data())->store(true);
  return info.Env().Undefined();
}

}  // namespace

void RegisterModel(Napi::Env env, Napi::Object exports) {
  auto* c = new ModelClasses{Napi::Persistent(NativeModel::Define(env)), Napi::Persistent(NativeSession::Define(env))};
  env.SetInstanceData<ModelClasses>(c);
  exports.Set("loadModel", Napi::Function::New(env, LoadModel, "loadModel"));
  exports.Set("createAbortHandle", Napi::Function::New(env, CreateAbortHandle, "createAbortHandle"));
  exports.Set("raiseAbort", Napi::Function::New(env, RaiseAbortHandle, "raiseAbort"));
}

}  // namespace vl3::addon
