#include "model/qwen2.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "common/status.h"
#include "ggml-cpu.h"
#include "kernels/attention.h"
#include "model/gguf_names.h"
#include "model/compute.h"
#include "model/layers.h"

namespace vl3 {
namespace {

namespace key = names::key;

}  // namespace

KvCache::KvCache(const Qwen2Hparams& hp, int64_t capacity, ggml_type type,
                 const std::vector<ggml_backend_t>& layer_backends)
    : capacity_(capacity) {
  const size_t n = 2 * static_cast<size_t>(hp.n_layers);
  ggml_init_params ip{ggml_tensor_overhead() * n, nullptr, true};
  std::vector<ggml_backend_t> owners;  // the backend of each context
  try {
    for (int64_t i = 0; i < hp.n_layers; ++i) {
      ggml_backend_t b = layer_backends[static_cast<size_t>(i)];
      size_t c = 0;
      while (c < owners.size() && owners[c] != b) ++c;
      if (c == owners.size()) {
        owners.push_back(b);
        ctxs_.push_back(ggml_init(ip));
        check(ctxs_.back() != nullptr, ErrorCode::OutOfMemory, "Cannot allocate the KV cache table");
      }
      k_.push_back(ggml_new_tensor_3d(ctxs_[c], type, hp.head_dim(), hp.n_kv_heads, capacity));
      v_.push_back(ggml_new_tensor_3d(ctxs_[c], type, hp.head_dim(), hp.n_kv_heads, capacity));
    }
    for (size_t c = 0; c < ctxs_.size(); ++c) {
      buffers_.push_back(ggml_backend_alloc_ctx_tensors(ctxs_[c], owners[c]));
      check(buffers_.back() != nullptr, ErrorCode::OutOfMemory,
            format("Cannot allocate a KV cache of %lld positions", static_cast<long long>(capacity)));
    }
  } catch (...) {
    release();
    throw;
  }
}

KvCache::~KvCache() { release(); }

void KvCache::release() {
  for (ggml_backend_buffer_t b : buffers_) {
    if (b != nullptr) ggml_backend_buffer_free(b);
  }
  for (ggml_context* c : ctxs_) ggml_free(c);
  buffers_.clear();
  ctxs_.clear();
}

void KvCache::truncate(int64_t n) {
  check(n >= 0 && n <= n_past_, ErrorCode::InvalidArgument, "KV cache truncation beyond its size");
  n_past_ = n;
}

size_t KvCache::bytes() const {
  size_t n = 0;
  for (ggml_backend_buffer_t b : buffers_) n += b != nullptr ? ggml_backend_buffer_get_size(b) : 0;
  return n;
}

Qwen2Model::Qwen2Model(GgufFile& file, ggml_backend_t backend, ggml_backend_t cpu, int64_t gpu_layers)
    : backend_(backend) {
  check(file.has(key::architecture) && file.get_string(key::architecture) == "qwen2", ErrorCode::InvalidModel,
        format("%s is not a qwen2 language model (general.architecture)", file.path().c_str()));
  hp_.dim = static_cast<int64_t>(file.get_uint(key::embeddingLength));
  hp_.ffn_dim = static_cast<int64_t>(file.get_uint(key::feedForwardLength));
  hp_.n_layers = static_cast<int64_t>(file.get_uint(key::blockCount));
  hp_.n_heads = static_cast<int64_t>(file.get_uint(key::headCount));
  hp_.n_kv_heads = static_cast<int64_t>(file.get_uint(key::headCountKv));
  hp_.n_ctx_train = static_cast<int64_t>(file.get_uint(key::contextLength));
  hp_.rope_theta = static_cast<float>(file.get_float(key::ropeFreqBase));
  hp_.eps = static_cast<float>(file.get_float(key::rmsEps));
  check(hp_.dim > 0 && hp_.n_heads > 0 && hp_.n_kv_heads > 0 && hp_.dim % hp_.n_heads == 0 &&
            hp_.n_heads % hp_.n_kv_heads == 0 && hp_.head_dim() % 2 == 0 && hp_.n_layers > 0 && hp_.n_layers <= 512 &&
            hp_.ffn_dim > 0,
        ErrorCode::InvalidModel, format("%s: inconsistent qwen2 hyper-parameters", file.path().c_str()));
  check(std::isfinite(hp_.eps) && hp_.eps >= 0.0f && std::isfinite(hp_.rope_theta) && hp_.rope_theta > 0.0f,
        ErrorCode::InvalidModel,
        format("%s: %s must be a finite number >= 0 and %s a finite number > 0 (found %g and %g)", file.path().c_str(),
               key::rmsEps, key::ropeFreqBase, static_cast<double>(hp_.eps), static_cast<double>(hp_.rope_theta)));

  // Layer placement: everything on `backend`, or (split) the last gpu_layers layers and the head.
  const bool split = cpu != nullptr && cpu != backend && gpu_layers >= 0 && gpu_layers < hp_.n_layers;
  offloaded_ = split ? gpu_layers : hp_.n_layers;
  for (int64_t i = 0; i < hp_.n_layers; ++i) layer_backend_.push_back(!split || i >= hp_.n_layers - offloaded_ ? backend : cpu);
  Weights::Placement place = [&](const std::string& name) -> ggml_backend_t {
    if (!split) return backend;
    if (name.rfind("blk.", 0) == 0) {
      const int64_t il = std::strtoll(name.c_str() + 4, nullptr, 10);
      return il >= 0 && il < hp_.n_layers ? layer_backend_[static_cast<size_t>(il)] : cpu;
    }
    if (name.rfind("output", 0) == 0) return offloaded_ > 0 ? backend : cpu;  // output_norm, output
    return cpu;  // token_embd: rows are gathered on the CPU
  };
  // Non-f32 models load q/k/v and gate/up as one matrix each (fewer matmuls, activation
  // quantizations and thread barriers per layer); f32 models keep the reference's separate ops.
  const GgufTensorInfo* wq0 = file.find_tensor("blk.0.attn_q.weight");
  const bool exact = wq0 != nullptr && wq0->type == GGML_TYPE_F32;
  std::vector<Weights::Fusion> fusions;
  auto layer_name = [](const char* pattern, int64_t il) {
    std::string s = pattern;
    return s.replace(s.find("{N}"), 3, std::to_string(il));
  };
  auto blk = [](int64_t il, const char* suffix) { return "blk." + std::to_string(il) + "." + suffix; };
  const bool fuse = !exact && std::getenv("VL3_TEST_NO_FUSE") == nullptr;  // test hook: the unfused graph
  for (int64_t il = 0; fuse && il < hp_.n_layers; ++il) {
    auto n = [&](const char* suffix) { return blk(il, suffix); };
    const std::vector<std::string> qkv = {n("attn_q.weight"), n("attn_k.weight"), n("attn_v.weight")};
    const std::vector<std::string> qkv_b = {n("attn_q.bias"), n("attn_k.bias"), n("attn_v.bias")};
    // Weights skips a fusion whose parts differ in type (q4_k_m gives some layers a 6-bit attn_v);
    // the biases follow their weights.
    const std::string w = layer_name(names::fused::attn_qkv_weight, il);
    fusions.push_back({w, qkv});
    fusions.push_back({layer_name(names::fused::attn_qkv_bias, il), qkv_b, w});
    fusions.push_back({layer_name(names::fused::ffn_gate_up, il), {n("ffn_gate.weight"), n("ffn_up.weight")}});
  }
  weights_ = std::make_unique<Weights>(file, place, std::initializer_list<const char*>{"token_embd.weight"},  // read by get_rows
                                       fusions);
  if (split) {
    ggml_backend_t backends[2] = {backend, cpu};
    const size_t n_nodes = 256 + 128 * static_cast<size_t>(hp_.n_layers);
    sched_ = ggml_backend_sched_new(backends, nullptr, 2, n_nodes, false, true);
    check(sched_ != nullptr, ErrorCode::OutOfMemory, "Cannot create the GPU/CPU scheduler");
  }
  const Weights& w = *weights_;
  const GgufTensorInfo* emb = file.find_tensor("token_embd.weight");
  check(emb != nullptr && emb->ne[0] == hp_.dim, ErrorCode::InvalidModel,
        format("%s: token_embd.weight is missing or not %lld wide", file.path().c_str(), static_cast<long long>(hp_.dim)));
  hp_.n_vocab = emb->ne[1];
  kv_type_ = exact ? GGML_TYPE_F32 : GGML_TYPE_F16;
  const int64_t D = hp_.dim, F = hp_.ffn_dim, KV = hp_.head_dim() * hp_.n_kv_heads;
  tok_embd_ = w.get("token_embd.weight", {D, hp_.n_vocab});
  output_norm_ = w.get("output_norm.weight", {D}, true);
  output_ = w.has("output.weight") ? w.get("output.weight", {D, hp_.n_vocab}) : tok_embd_;
  for (int64_t i = 0; i < hp_.n_layers; ++i) {
    auto n = [&](const char* suffix) { return blk(i, suffix); };
    Layer L{};
    L.attn_norm = w.get(n("attn_norm.weight"), {D}, true);
    const std::string qkv = layer_name(names::fused::attn_qkv_weight, i);
    const std::string qkv_b = layer_name(names::fused::attn_qkv_bias, i);
    if (w.has(qkv)) {
      L.wqkv = w.get(qkv, {D, D + 2 * KV});
      check(w.has(qkv_b), ErrorCode::InvalidModel,
            format("%s: blk.%lld.attn_q/k/v.bias are missing or of different types", file.path().c_str(),
                   static_cast<long long>(i)));
      L.bqkv = w.get(qkv_b, {D + 2 * KV}, true);
    } else {
      L.wq = w.get(n("attn_q.weight"), {D, D});
      L.bq = w.get(n("attn_q.bias"), {D}, true);
      L.wk = w.get(n("attn_k.weight"), {D, KV});
      L.bk = w.get(n("attn_k.bias"), {KV}, true);
      L.wv = w.get(n("attn_v.weight"), {D, KV});
      L.bv = w.get(n("attn_v.bias"), {KV}, true);
    }
    L.wo = w.get(n("attn_output.weight"), {D, D});
    L.ffn_norm = w.get(n("ffn_norm.weight"), {D}, true);
    const std::string gate_up = layer_name(names::fused::ffn_gate_up, i);
    if (w.has(gate_up)) {
      L.w_gate_up = w.get(gate_up, {D, 2 * F});
    } else {
      L.w_gate = w.get(n("ffn_gate.weight"), {D, F});
      L.w_up = w.get(n("ffn_up.weight"), {D, F});
    }
    L.w_down = w.get(n("ffn_down.weight"), {F, D});
    layers_.push_back(L);
  }
}

std::unique_ptr<KvCache> Qwen2Model::new_cache(int64_t capacity) const {
  check(capacity > 0 && capacity <= (int64_t(1) << 24), ErrorCode::InvalidArgument,
        format("context size %lld out of range", static_cast<long long>(capacity)));
  return std::make_unique<KvCache>(hp_, capacity, kv_type_, layer_backend_);
}

Qwen2Model::~Qwen2Model() {
  if (sched_ != nullptr) ggml_backend_sched_free(sched_);
}

std::vector<float> Qwen2Model::forward(KvCache& cache, const DecoderInput& in, bool all_logits, ggml_gallocr_t alloc,
                                       int threads, const std::atomic<bool>* abort_flag, int64_t batch) const {
  check(in.n > 0, ErrorCode::InvalidArgument, "empty decoder input");
  check((in.ids == nullptr) != (in.embd == nullptr), ErrorCode::InvalidArgument, "decoder input needs ids or embeddings");
  check(cache.size() + in.n <= cache.capacity(), ErrorCode::InvalidArgument,
        format("The prompt needs %lld positions but the context holds %lld (contextSize)",
               static_cast<long long>(cache.size() + in.n), static_cast<long long>(cache.capacity())));
  if (in.ids != nullptr) {
    for (int64_t i = 0; i < in.n; ++i) {
      check(in.ids[i] >= 0 && in.ids[i] < hp_.n_vocab, ErrorCode::InvalidArgument,
            format("token id %d is outside the vocabulary (0..%lld)", in.ids[i], static_cast<long long>(hp_.n_vocab - 1)));
    }
  }
  std::vector<float> out;
  for (int64_t start = 0; start < in.n; start += batch) {
    DecoderInput part;
    part.n = std::min(batch, in.n - start);
    if (in.ids != nullptr) part.ids = in.ids + start;
    else part.embd = in.embd + start * hp_.dim;
    const bool last = start + part.n == in.n;
    std::vector<float> logits = forward_chunk(cache, part, all_logits, alloc, threads, abort_flag);
    if (all_logits) out.insert(out.end(), logits.begin(), logits.end());
    else if (last) out = std::move(logits);
  }
  return out;
}

std::vector<float> Qwen2Model::forward_chunk(KvCache& cache, const DecoderInput& in, bool all_logits,
                                             ggml_gallocr_t alloc, int threads,
                                             const std::atomic<bool>* abort_flag) const {
  const int64_t n = in.n, n_past = cache.size(), L = n_past + n;
  const int64_t D = hp_.dim, hd = hp_.head_dim(), nh = hp_.n_heads, nkv = hp_.n_kv_heads;
  // Generous: ~50 tensors per layer today; running out would be a ggml assertion, not an error.
  const size_t n_nodes = 256 + 128 * static_cast<size_t>(hp_.n_layers);
  GraphContext owner = new_graph_context(n_nodes);
  ggml_context* ctx = owner.get();
  ggml_cgraph* gf = ggml_new_graph_custom(ctx, n_nodes, false);

  ggml_tensor* x;
  ggml_tensor* ids = nullptr;
  ggml_tensor* embd = nullptr;
  if (in.ids != nullptr) {
    ids = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, n);
    ggml_set_input(ids);
    x = layers::get_rows(ctx, tok_embd_, ids);  // [D, n]
  } else {
    embd = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, D, n);
    ggml_set_input(embd);
    x = embd;
  }
  // Flash attention straight on the f16 cache (as llama.cpp does on the CPU): no K/V copies and no
  // n_q x n_kv score matrix. f32 weights keep the exact softmax path and an f32 cache (parity).
  const bool flash = kv_type_ == GGML_TYPE_F16;
  // Decoding one token in a layer on the CPU: our attention op (kernels/attention.h) instead of
  // ggml's flash attention, which pays a vector-dot call, an expf and f16 sums per cached position
  // and head. It also rotates q and k and appends k and v to the cache: one node for five, and
  // each node costs decode a thread barrier (0-3 % faster decode on Q4_K_M).
  const bool own_attention = flash && n == 1 && kernels::attention_f16_enabled(hd);
  // Prefill on the CPU: ggml's flash attention is f32 inside only on its tiled path (64+ query
  // rows, layers::cpu_flash_tiled). Shorter chunks (the text after an image, typically: the rows
  // whose logits give the first token) it runs with q rounded to f16 and softmax·V summed in an
  // f16 buffer, which moved a first-token log-probability by 0.02-0.06 after a 700-patch image.
  // Those chunks go through our attention op (f32 q, scores and sums, and 2-3x faster there), or
  // where that cannot run through ggml's on f32 copies of the cached K and V.
  const bool short_prefill = flash && n > 1 && !layers::cpu_flash_tiled(n, hd);
  // RoPE: f32 models rotate with f32 tables computed exactly as the reference does (parity to 1e-4);
  // the others use ggml's fused NeoX rope (one op instead of five per tensor: fewer passes over q/k
  // and fewer thread barriers, which decode pays per op); its angles, built by repeated
  // multiplication, are a few 1e-6 relative off the reference's. Our attention op rotates with the
  // exact tables.
  const bool exact_rope = !flash;
  ggml_tensor* cos = nullptr;  // exact tables [hd, 1, n], made when a layer uses them
  ggml_tensor* sin = nullptr;
  ggml_tensor* pos = nullptr;  // positions for ggml's rope, likewise
  auto tables = [&]() {
    if (cos != nullptr) return;
    cos = ggml_new_tensor_3d(ctx, GGML_TYPE_F32, hd, 1, n);
    sin = ggml_new_tensor_3d(ctx, GGML_TYPE_F32, hd, 1, n);
    ggml_set_input(cos);
    ggml_set_input(sin);
  };
  auto rope = [&](ggml_tensor* t) {  // [hd, heads, n] -> same
    if (exact_rope) {
      tables();
      return layers::rotary(ctx, t, cos, sin);
    }
    if (pos == nullptr) {
      pos = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, n);
      ggml_set_input(pos);
    }
    return ggml_rope_ext(ctx, t, pos, nullptr, static_cast<int>(hd), GGML_ROPE_TYPE_NEOX, 0, hp_.rope_theta, 1.0f,
                         0.0f, 1.0f, 0.0f, 0.0f);
  };
  ggml_tensor* mask = nullptr;  // [n_kv, n_q] causal, for prefill; made when a layer uses it
  auto causal_mask = [&]() -> ggml_tensor* {
    if (n == 1) return nullptr;
    if (mask == nullptr) {
      mask = ggml_new_tensor_2d(ctx, flash ? GGML_TYPE_F16 : GGML_TYPE_F32, L, n);
      ggml_set_input(mask);
    }
    return mask;
  };
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  for (size_t il = 0; il < layers_.size(); ++il) {
    const Layer& W = layers_[il];
    ggml_tensor* h = layers::rms_norm(ctx, x, W.attn_norm, hp_.eps);
    ggml_tensor *q, *k, *v;
    if (W.wqkv != nullptr) {
      ggml_tensor* qkv = layers::linear(ctx, h, W.wqkv, W.bqkv);                              // [D + 2·KV, n]
      const size_t es = ggml_element_size(qkv);
      q = ggml_view_3d(ctx, qkv, hd, nh, n, hd * es, qkv->nb[1], 0);                           // [hd, nh, n]
      k = ggml_view_3d(ctx, qkv, hd, nkv, n, hd * es, qkv->nb[1], D * es);                     // [hd, nkv, n]
      v = ggml_view_3d(ctx, qkv, hd, nkv, n, hd * es, qkv->nb[1], (D + nkv * hd) * es);        // [hd, nkv, n]
    } else {
      q = ggml_reshape_3d(ctx, layers::linear(ctx, h, W.wq, W.bq), hd, nh, n);                // [hd, nh, n]
      k = ggml_reshape_3d(ctx, layers::linear(ctx, h, W.wk, W.bk), hd, nkv, n);               // [hd, nkv, n]
      v = ggml_reshape_3d(ctx, layers::linear(ctx, h, W.wv, W.bv), hd, nkv, n);
    }
    // Append k, v at positions n_past.. of the cache, then attend over positions 0..L-1.
    ggml_tensor* kc = cache.k_[il];
    ggml_tensor* vc = cache.v_[il];
    ggml_tensor* k_all = ggml_view_3d(ctx, kc, hd, nkv, L, kc->nb[1], kc->nb[2], 0);           // [hd, nkv, L]
    ggml_tensor* v_all = ggml_view_3d(ctx, vc, hd, nkv, L, vc->nb[1], vc->nb[2], 0);
    const bool on_cpu = ggml_backend_is_cpu(layer_backend_[il]);
    const bool append = own_attention && on_cpu;
    if (!append) {
      q = rope(q);
      k = rope(k);
      ggml_build_forward_expand(gf, ggml_cpy(ctx, k, ggml_view_3d(ctx, kc, hd, nkv, n, kc->nb[1], kc->nb[2], n_past * kc->nb[2])));
      ggml_build_forward_expand(gf, ggml_cpy(ctx, v, ggml_view_3d(ctx, vc, hd, nkv, n, vc->nb[1], vc->nb[2], n_past * vc->nb[2])));
    }
    ggml_tensor* attn;
    if (append) {
      tables();
      attn = kernels::attention_f16_append(ctx, q, k, v, k_all, v_all, cos, sin);              // [hd, nh, 1]
    } else if (short_prefill && on_cpu && kernels::attention_f16_enabled(hd)) {
      attn = kernels::attention_f16(ctx, q, k_all, v_all);                                     // [hd, nh, n]
    } else if (flash) {
      ggml_tensor* kp = ggml_permute(ctx, k_all, 0, 2, 1, 3);                                  // k [hd, L, nkv]
      ggml_tensor* vp = ggml_permute(ctx, v_all, 0, 2, 1, 3);
      if (short_prefill && on_cpu) {  // f32 K/V: ggml's per-row path is f32 throughout then
        kp = ggml_cast(ctx, kp, GGML_TYPE_F32);
        vp = ggml_cast(ctx, vp, GGML_TYPE_F32);
      }
      attn = ggml_flash_attn_ext(ctx, ggml_permute(ctx, q, 0, 2, 1, 3), kp, vp,                 // q [hd, n, nh]
                                 causal_mask(), scale, 0.0f, 0.0f);                             // -> [hd, nh, n]
      ggml_flash_attn_ext_set_prec(attn, GGML_PREC_F32);
    } else {
      // Contiguous operands let ggml use its blocked f32 GEMM for QK^T and PV (the strided
      // views would fall back to one dot product per output element).
      k_all = ggml_cont(ctx, ggml_permute(ctx, k_all, 0, 2, 1, 3));                           // [hd, L, nkv]
      ggml_tensor* v_t = ggml_cont(ctx, ggml_permute(ctx, v_all, 1, 2, 0, 3));                 // [L, hd, nkv]
      q = ggml_cont(ctx, ggml_permute(ctx, q, 0, 2, 1, 3));                                   // [hd, n, nh]
      attn = layers::attention(ctx, q, k_all, v_t, causal_mask(), scale);                      // [hd, nh, n]
    }
    attn = ggml_reshape_2d(ctx, attn, D, n);                                                   // [D, n]
    if (il + 1 == layers_.size() && !all_logits && n > 1) {
      // Only the last position's logits are wanted and its K/V are cached: the last layer's output
      // projection, residual and MLP need just that row (a 28-layer model skips ~3 % of the work).
      attn = ggml_view_2d(ctx, attn, D, 1, attn->nb[1], (n - 1) * attn->nb[1]);               // [D, 1]
      x = ggml_view_2d(ctx, x, D, 1, x->nb[1], (n - 1) * x->nb[1]);                           // [D, 1]
    }
    x = layers::linear(ctx, attn, W.wo, nullptr, x);                                           // x + Wo·attn
    h = layers::rms_norm(ctx, x, W.ffn_norm, hp_.eps);
    ggml_tensor* ffn = W.w_gate_up != nullptr
                           ? ggml_swiglu(ctx, layers::matmul(ctx, W.w_gate_up, h))  // [2F, n] -> silu(g)·u [F, n]
                           : ggml_swiglu_split(ctx, layers::matmul(ctx, W.w_gate, h), layers::matmul(ctx, W.w_up, h));
    x = layers::linear(ctx, ffn, W.w_down, nullptr, x);                                       // [D, n]
  }
  x = layers::rms_norm(ctx, x, output_norm_, hp_.eps);
  ggml_tensor* logits = layers::matmul(ctx, output_, x);                                         // [n_vocab, rows]
  ggml_set_output(logits);
  ggml_build_forward_expand(gf, logits);

  if (sched_ != nullptr) {
    ggml_backend_sched_reset(sched_);
    check(ggml_backend_sched_alloc_graph(sched_, gf), ErrorCode::OutOfMemory, "Cannot allocate decoder working memory");
  } else {
    check(ggml_gallocr_alloc_graph(alloc, gf), ErrorCode::OutOfMemory, "Cannot allocate decoder working memory");
  }
  if (ids != nullptr) ggml_backend_tensor_set(ids, in.ids, 0, ggml_nbytes(ids));
  if (embd != nullptr) ggml_backend_tensor_set(embd, in.embd, 0, ggml_nbytes(embd));
  if (cos != nullptr) {
    // RoPE tables in f32 exactly as the reference computes them: inv_freq = 1/θ^(2i/hd), angle = pos·inv_freq.
    std::vector<float> cos_v(static_cast<size_t>(hd * n)), sin_v(static_cast<size_t>(hd * n));
    for (int64_t i = 0; i < hd / 2; ++i) {
      const float inv = 1.0f / std::pow(hp_.rope_theta, static_cast<float>(2 * i) / static_cast<float>(hd));
      for (int64_t t = 0; t < n; ++t) {
        const float a = static_cast<float>(n_past + t) * inv;
        const size_t o = static_cast<size_t>(t * hd + i);
        cos_v[o] = cos_v[o + static_cast<size_t>(hd / 2)] = std::cos(a);
        sin_v[o] = sin_v[o + static_cast<size_t>(hd / 2)] = std::sin(a);
      }
    }
    ggml_backend_tensor_set(cos, cos_v.data(), 0, ggml_nbytes(cos));
    ggml_backend_tensor_set(sin, sin_v.data(), 0, ggml_nbytes(sin));
  }
  if (pos != nullptr) {
    std::vector<int32_t> p(static_cast<size_t>(n));
    for (int64_t t = 0; t < n; ++t) p[static_cast<size_t>(t)] = static_cast<int32_t>(n_past + t);
    ggml_backend_tensor_set(pos, p.data(), 0, ggml_nbytes(pos));
  }
  if (mask != nullptr) {
    std::vector<float> m(static_cast<size_t>(L * n));
    const float neg_inf = -std::numeric_limits<float>::infinity();
    for (int64_t t = 0; t < n; ++t)
      for (int64_t j = 0; j < L; ++j) m[static_cast<size_t>(t * L + j)] = j <= n_past + t ? 0.0f : neg_inf;
    if (mask->type == GGML_TYPE_F16) {
      std::vector<ggml_fp16_t> h(m.size());
      ggml_fp32_to_fp16_row(m.data(), h.data(), static_cast<int64_t>(m.size()));
      ggml_backend_tensor_set(mask, h.data(), 0, ggml_nbytes(mask));
    } else {
      ggml_backend_tensor_set(mask, m.data(), 0, ggml_nbytes(mask));
    }
  }

  if (sched_ != nullptr) {
    compute_graph_sched(sched_, gf, threads, abort_flag, "Generation");
  } else {
    compute_graph(backend_, gf, threads, abort_flag, "Generation");
  }
  cache.n_past_ = L;

  std::vector<float> out(static_cast<size_t>(ggml_nelements(logits)));
  ggml_backend_tensor_get(logits, out.data(), 0, ggml_nbytes(logits));
  return out;
}

}  // namespace vl3
