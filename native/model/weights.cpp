#include "model/weights.h"

#include <vector>

#include "common/status.h"

namespace vl3 {

Weights::Weights(GgufFile& file, ggml_backend_t backend) : path_(file.path()) {
  const auto& infos = file.tensors();
  ggml_init_params ip{ggml_tensor_overhead() * (infos.size() + 1), nullptr, /*no_alloc=*/true};
  ctx_ = ggml_init(ip);
  check(ctx_ != nullptr, ErrorCode::OutOfMemory, "Cannot allocate the weight table");
  for (const auto& info : infos) {
    check(info.name.size() < GGML_MAX_NAME, ErrorCode::InvalidModel,
          format("%s: tensor name %s is too long", path_.c_str(), info.name.c_str()));
    ggml_tensor* t = ggml_new_tensor(ctx_, info.type, std::max(1, info.n_dims), info.ne);
    ggml_set_name(t, info.name.c_str());
    check(ggml_nbytes(t) == info.nbytes, ErrorCode::InvalidModel,
          format("%s: tensor %s size does not match its shape", path_.c_str(), info.name.c_str()));
    tensors_[info.name] = t;
  }
  buffer_ = ggml_backend_alloc_ctx_tensors(ctx_, backend);
  if (buffer_ == nullptr) {
    ggml_free(ctx_);
    throw Error(ErrorCode::OutOfMemory, format("Cannot allocate memory for the weights of %s", path_.c_str()));
  }
  ggml_backend_buffer_set_usage(buffer_, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
  const bool host = ggml_backend_buffer_is_host(buffer_);
  std::vector<uint8_t> staging;
  for (const auto& info : infos) {
    ggml_tensor* t = tensors_[info.name];
    if (host) {
      file.read_raw(info, t->data);
    } else {
      staging.resize(info.nbytes);
      file.read_raw(info, staging.data());
      ggml_backend_tensor_set(t, staging.data(), 0, info.nbytes);
    }
  }
}

Weights::~Weights() {
  if (buffer_ != nullptr) ggml_backend_buffer_free(buffer_);
  if (ctx_ != nullptr) ggml_free(ctx_);
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
  return buffer_ != nullptr ? ggml_backend_buffer_get_size(buffer_) : 0;
}

}  // namespace vl3
