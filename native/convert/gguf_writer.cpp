#include "convert/gguf_writer.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <set>
#include <thread>

#include "common/file_io.h"
#include "common/status.h"
#include "gguf.h"

namespace vl3::convert {
namespace {

struct GgufDeleter {
  void operator()(gguf_context* c) const { gguf_free(c); }
};
struct GgmlDeleter {
  void operator()(ggml_context* c) const { ggml_free(c); }
};

constexpr uint64_t kChunkBytes = 16ull << 20;  // f32 bytes per conversion chunk

void set_kv(gguf_context* ctx, const KvEntry& kv) {
  const char* k = kv.key.c_str();
  check(!kv.key.empty(), ErrorCode::InvalidArgument, "GGUF metadata key must not be empty");
  check(gguf_find_key(ctx, k) < 0, ErrorCode::InvalidArgument, format("Duplicate GGUF metadata key %s", k));
  // ggml asserts on a malformed alignment; the writer keeps the default (32).
  check(kv.key != "general.alignment", ErrorCode::InvalidArgument, "general.alignment is set by the writer");
  switch (kv.kind) {
    case KvEntry::Kind::U32: gguf_set_val_u32(ctx, k, static_cast<uint32_t>(kv.u)); break;
    case KvEntry::Kind::I32: gguf_set_val_i32(ctx, k, static_cast<int32_t>(kv.i)); break;
    case KvEntry::Kind::U64: gguf_set_val_u64(ctx, k, kv.u); break;
    case KvEntry::Kind::F32: gguf_set_val_f32(ctx, k, static_cast<float>(kv.f)); break;
    case KvEntry::Kind::Bool: gguf_set_val_bool(ctx, k, kv.b); break;
    case KvEntry::Kind::Str: gguf_set_val_str(ctx, k, kv.s.c_str()); break;
    case KvEntry::Kind::ArrStr: {
      std::vector<const char*> ptrs;
      ptrs.reserve(kv.strs.size());
      for (const auto& s : kv.strs) ptrs.push_back(s.c_str());
      gguf_set_arr_str(ctx, k, ptrs.data(), ptrs.size());
      break;
    }
    case KvEntry::Kind::ArrI32: gguf_set_arr_data(ctx, k, GGUF_TYPE_INT32, kv.i32s.data(), kv.i32s.size()); break;
    case KvEntry::Kind::ArrU32: gguf_set_arr_data(ctx, k, GGUF_TYPE_UINT32, kv.u32s.data(), kv.u32s.size()); break;
    case KvEntry::Kind::ArrF32: gguf_set_arr_data(ctx, k, GGUF_TYPE_FLOAT32, kv.f32s.data(), kv.f32s.size()); break;
  }
}

void validate_tensor(const TensorPlan& t, std::set<std::string>& seen) {
  check(!t.name.empty() && t.name.size() < GGML_MAX_NAME, ErrorCode::InvalidArgument,
        format("Tensor name '%s' must have 1 to %d characters", t.name.c_str(), GGML_MAX_NAME - 1));
  check(seen.insert(t.name).second, ErrorCode::InvalidArgument, format("Duplicate tensor %s", t.name.c_str()));
  check(!t.ne.empty() && t.ne.size() <= GGML_MAX_DIMS, ErrorCode::InvalidArgument,
        format("Tensor %s must have 1 to %d dimensions, got %zu", t.name.c_str(), GGML_MAX_DIMS, t.ne.size()));
  int64_t n = 1;
  for (int64_t d : t.ne) {
    check(d > 0 && d <= (int64_t(1) << 40) / n, ErrorCode::InvalidModel,
          format("Tensor %s has an invalid dimension %lld", t.name.c_str(), static_cast<long long>(d)));
    n *= d;
  }
  check(t.type >= 0 && t.type < GGML_TYPE_COUNT && ggml_type_size(t.type) > 0, ErrorCode::InvalidArgument,
        format("Tensor %s has an unsupported target type", t.name.c_str()));
  const int64_t blck = ggml_blck_size(t.type);
  check(t.ne[0] % blck == 0, ErrorCode::InvalidArgument,
        format("Tensor %s: row length %lld is not a multiple of %s's block size %lld", t.name.c_str(),
               static_cast<long long>(t.ne[0]), ggml_type_name(t.type), static_cast<long long>(blck)));
  check(!ggml_quantize_requires_imatrix(t.type), ErrorCode::InvalidArgument,
        format("Tensor %s: type %s needs an importance matrix, which the converter does not take",
               t.name.c_str(), ggml_type_name(t.type)));
  const uint64_t want = static_cast<uint64_t>(n) * source_dtype_size(t.src.dtype);
  check(t.src.nbytes == want, ErrorCode::InvalidModel,
        format("%s: tensor %s holds %llu bytes but its shape needs %llu", t.src.file.c_str(), t.name.c_str(),
               static_cast<unsigned long long>(t.src.nbytes), static_cast<unsigned long long>(want)));
}

void encode_parallel(const TensorPlan& t, const std::vector<uint8_t>& raw, const std::vector<float>& f32,
                     std::vector<uint8_t>& out, int64_t nrows, int threads) {
  const int64_t n_per_row = t.ne[0];
  const size_t src_row = static_cast<size_t>(n_per_row) * source_dtype_size(t.src.dtype);
  const size_t dst_row = ggml_row_size(t.type, n_per_row);
  const int64_t nt = std::max<int64_t>(1, std::min<int64_t>(threads, nrows));
  auto job = [&](int64_t r0, int64_t r1) {
    encode_rows(t.type, t.src.dtype, raw.data() + r0 * src_row, f32.data() + r0 * n_per_row,
                out.data() + r0 * dst_row, r1 - r0, n_per_row);
  };
  if (nt == 1) {
    job(0, nrows);
    return;
  }
  std::vector<std::thread> pool;
  const int64_t per = (nrows + nt - 1) / nt;
  for (int64_t r0 = 0; r0 < nrows; r0 += per) pool.emplace_back(job, r0, std::min(nrows, r0 + per));
  for (auto& th : pool) th.join();
}

}  // namespace

void write_gguf(const std::string& path, const std::vector<KvEntry>& kvs, const std::vector<TensorPlan>& tensors,
                const WriteOptions& options) {
  install_ggml_hooks();
  // 1. Validate everything before writing: a bad plan never leaves a file behind.
  std::set<std::string> seen;
  uint64_t bytes_total = 0;
  std::map<std::string, std::unique_ptr<InputFile>> inputs;
  for (const auto& t : tensors) {
    validate_tensor(t, seen);
    auto& in = inputs[t.src.file];
    if (!in) in = std::make_unique<InputFile>(t.src.file);
    check(t.src.offset <= in->size() && t.src.nbytes <= in->size() - t.src.offset, ErrorCode::InvalidModel,
          format("%s is truncated: tensor %s needs bytes %llu..%llu but the file has %llu bytes", t.src.file.c_str(),
                 t.name.c_str(), static_cast<unsigned long long>(t.src.offset),
                 static_cast<unsigned long long>(t.src.offset + t.src.nbytes),
                 static_cast<unsigned long long>(in->size())));
    bytes_total += t.src.nbytes;
  }

  // 2. Header: metadata and tensor infos (offsets are assigned by gguf_add_tensor).
  std::unique_ptr<gguf_context, GgufDeleter> gctx(gguf_init_empty());
  for (const auto& kv : kvs) set_kv(gctx.get(), kv);
  ggml_init_params ip{ggml_tensor_overhead() * (tensors.size() + 1), nullptr, /*no_alloc=*/true};
  std::unique_ptr<ggml_context, GgmlDeleter> mctx(ggml_init(ip));
  check(mctx != nullptr, ErrorCode::Internal, "ggml_init failed");
  for (const auto& t : tensors) {
    ggml_tensor* gt = ggml_new_tensor(mctx.get(), t.type, static_cast<int>(t.ne.size()), t.ne.data());
    ggml_set_name(gt, t.name.c_str());
    gguf_add_tensor(gctx.get(), gt);
  }
  AtomicOutputFile out(path);
  {
    std::vector<uint8_t> meta(gguf_get_meta_size(gctx.get()));
    gguf_get_meta_data(gctx.get(), meta.data());
    out.write(meta.data(), meta.size());
  }
  const uint64_t data_start = out.position();
  const size_t alignment = gguf_get_alignment(gctx.get());

  // 3. Tensor data, chunk by chunk of whole rows.
  uint64_t bytes_done = 0;
  std::vector<uint8_t> raw;
  std::vector<float> f32;
  std::vector<uint8_t> enc;
  for (size_t ti = 0; ti < tensors.size(); ++ti) {
    const TensorPlan& t = tensors[ti];
    const uint64_t expect_at = data_start + gguf_get_tensor_offset(gctx.get(), static_cast<int64_t>(ti));
    check(out.position() <= expect_at, ErrorCode::Internal, "GGUF tensor offsets out of order");
    out.write_zeros(expect_at - out.position());

    const int64_t n_per_row = t.ne[0];
    int64_t nrows_total = 1;
    for (size_t d = 1; d < t.ne.size(); ++d) nrows_total *= t.ne[d];
    const int64_t rows_per_chunk =
        std::max<int64_t>(1, static_cast<int64_t>(kChunkBytes / (static_cast<uint64_t>(n_per_row) * 4)));
    const size_t src_row = static_cast<size_t>(n_per_row) * source_dtype_size(t.src.dtype);
    for (int64_t r0 = 0; r0 < nrows_total; r0 += rows_per_chunk) {
      if (options.cancel != nullptr && options.cancel->load()) {
        throw Error(ErrorCode::Aborted, "Conversion was aborted");
      }
      const int64_t nrows = std::min(rows_per_chunk, nrows_total - r0);
      raw.resize(static_cast<size_t>(nrows) * src_row);
      inputs[t.src.file]->read_at(t.src.offset + static_cast<uint64_t>(r0) * src_row, raw.data(), raw.size(),
                                  "tensor " + t.name);
      f32.resize(static_cast<size_t>(nrows * n_per_row));
      source_to_f32(t.src.dtype, raw.data(), f32.data(), nrows * n_per_row);
      for (size_t i = 0; i < f32.size(); ++i) {
        if (!std::isfinite(f32[i])) {
          throw Error(ErrorCode::InvalidModel,
                      format("%s: tensor %s has a non-finite value (NaN or Inf) at element %lld", t.src.file.c_str(),
                             t.name.c_str(), static_cast<long long>(r0 * n_per_row + static_cast<int64_t>(i))));
        }
      }
      enc.resize(encoded_size(t.type, nrows, n_per_row));
      encode_parallel(t, raw, f32, enc, nrows, options.threads);
      out.write(enc.data(), enc.size());
      bytes_done += raw.size();
      if (options.on_progress) options.on_progress({ti, tensors.size(), &t.name, bytes_done, bytes_total});
    }
    const uint64_t written = out.position() - expect_at;
    out.write_zeros(GGML_PAD(written, alignment) - written);
  }
  out.commit();
}

}  // namespace vl3::convert
