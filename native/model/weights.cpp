#include "model/weights.h"

#include <cstring>
#include <set>
#include <vector>

#include "common/status.h"
#include "ggml-cpu.h"

namespace vl3 {
namespace {

/** ggml's CPU_REPACK buffer type when the backend is the CPU, else null. */
ggml_backend_buffer_type_t repack_buffer_type(ggml_backend_t backend) {
  if (!ggml_backend_is_cpu(backend)) return nullptr;
  ggml_backend_dev_t dev = ggml_backend_get_device(backend);
  ggml_backend_reg_t reg = dev != nullptr ? ggml_backend_dev_backend_reg(dev) : nullptr;
  if (reg == nullptr) return nullptr;
  auto get = reinterpret_cast<ggml_backend_dev_get_extra_bufts_t>(
      ggml_backend_reg_get_proc_address(reg, "ggml_backend_dev_get_extra_bufts"));
  if (get == nullptr) return nullptr;
  for (ggml_backend_buffer_type_t* p = get(dev); p != nullptr && *p != nullptr; ++p) {
    if (std::strcmp(ggml_backend_buft_name(*p), "CPU_REPACK") == 0) return *p;
  }
  return nullptr;
}

/**
 * Whether ggml-cpu has an interleaved kernel for this matrix on this build's CPU features. Must
 * agree with ggml's own choice: the repack buffer asserts on a tensor it cannot repack.
 */
bool repackable(const GgufTensorInfo& info) {
  if (info.n_dims != 2 || info.ne[1] % 8 != 0) return false;
  return (info.type == GGML_TYPE_Q4_0 || info.type == GGML_TYPE_Q4_K) && ggml_cpu_has_avx2();
}

}  // namespace

Weights::Weights(GgufFile& file, ggml_backend_t backend, std::initializer_list<const char*> no_repack)
    : path_(file.path()) {
  try {
    load(file, backend, no_repack);
  } catch (...) {
    release();
    throw;
  }
}

void Weights::load(GgufFile& file, ggml_backend_t backend, std::initializer_list<const char*> no_repack) {
  const auto& infos = file.tensors();
  const std::set<std::string> keep_plain(no_repack.begin(), no_repack.end());
  ggml_backend_buffer_type_t repack_buft = repack_buffer_type(backend);
  ggml_init_params ip{ggml_tensor_overhead() * (infos.size() + 1), nullptr, /*no_alloc=*/true};
  ctx_ = ggml_init(ip);
  repack_ctx_ = ggml_init(ip);
  check(ctx_ != nullptr && repack_ctx_ != nullptr, ErrorCode::OutOfMemory, "Cannot allocate the weight table");
  std::set<std::string> repacked;
  for (const auto& info : infos) {
    check(info.name.size() < GGML_MAX_NAME, ErrorCode::InvalidModel,
          format("%s: tensor name %s is too long", path_.c_str(), info.name.c_str()));
    const bool repack = repack_buft != nullptr && repackable(info) && keep_plain.count(info.name) == 0;
    ggml_tensor* t = ggml_new_tensor(repack ? repack_ctx_ : ctx_, info.type, std::max(1, info.n_dims), info.ne);
    ggml_set_name(t, info.name.c_str());
    check(ggml_nbytes(t) == info.nbytes, ErrorCode::InvalidModel,
          format("%s: tensor %s size does not match its shape", path_.c_str(), info.name.c_str()));
    tensors_[info.name] = t;
    if (repack) repacked.insert(info.name);
  }
  const std::string what = format("Cannot allocate memory for the weights of %s", path_.c_str());
  if (repacked.size() < infos.size()) {
    buffer_ = ggml_backend_alloc_ctx_tensors(ctx_, backend);
    check(buffer_ != nullptr, ErrorCode::OutOfMemory, what);
    ggml_backend_buffer_set_usage(buffer_, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
  }
  if (!repacked.empty()) {
    repack_buffer_ = ggml_backend_alloc_ctx_tensors_from_buft(repack_ctx_, repack_buft);
    check(repack_buffer_ != nullptr, ErrorCode::OutOfMemory, what);
    ggml_backend_buffer_set_usage(repack_buffer_, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
  }
  const bool host = buffer_ != nullptr && ggml_backend_buffer_is_host(buffer_);
  std::vector<uint8_t> staging;
  for (const auto& info : infos) {
    ggml_tensor* t = tensors_[info.name];
    if (host && repacked.count(info.name) == 0) {
      file.read_raw(info, t->data);  // straight into place
    } else {
      staging.resize(info.nbytes);  // the repack buffer rewrites the layout as it copies
      file.read_raw(info, staging.data());
      ggml_backend_tensor_set(t, staging.data(), 0, info.nbytes);
    }
  }
}

Weights::~Weights() { release(); }

void Weights::release() {
  if (repack_buffer_ != nullptr) ggml_backend_buffer_free(repack_buffer_);
  if (buffer_ != nullptr) ggml_backend_buffer_free(buffer_);
  if (repack_ctx_ != nullptr) ggml_free(repack_ctx_);
  if (ctx_ != nullptr) ggml_free(ctx_);
  repack_buffer_ = buffer_ = nullptr;
  repack_ctx_ = ctx_ = nullptr;
}

ggml_tensor* Weights::get(const std::string& name, std::initializer_list<int64_t> ne, bool f32_only) const {
  auto it = tensors_.find(name);
  check(it != tensors_.end(), ErrorCode::InvalidModel, format("%s: tensor %s is missing", path_.c_str(), name.c_str()));
  ggml_tensor* t = it->second;
  size_t d = 0;
  bool ok = true;
  for (int64_t n : ne) ok = ok && t->ne[d++] == n;
  for (; d < GGML_MAX_DIMS; ++d) ok = ok && t->ne[d] == 1;
  if (!ok) {
    std::string want, got;
    for (int64_t n : ne) want += (want.empty() ? "" : ", ") + std::to_string(n);
    for (int i = 0; i < ggml_n_dims(t); ++i) got += (got.empty() ? "" : ", ") + std::to_string(t->ne[i]);
    throw Error(ErrorCode::InvalidModel, format("%s: tensor %s has shape [%s], expected [%s]", path_.c_str(),
                                                name.c_str(), got.c_str(), want.c_str()));
  }
  check(!f32_only || t->type == GGML_TYPE_F32, ErrorCode::InvalidModel,
        format("%s: tensor %s must be f32, found %s", path_.c_str(), name.c_str(), ggml_type_name(t->type)));
  return t;
}

size_t Weights::bytes() const {
  return (buffer_ != nullptr ? ggml_backend_buffer_get_size(buffer_) : 0) +
         (repack_buffer_ != nullptr ? ggml_backend_buffer_get_size(repack_buffer_) : 0);
}

}  // namespace vl3
