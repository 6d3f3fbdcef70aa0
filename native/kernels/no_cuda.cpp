// The CUDA entry points of kernels.h in a build without CUDA: each says how to get one.
#include "common/status.h"
#include "kernels/kernels.h"

namespace vl3::kernels {
namespace {

constexpr const char* kReason =
    "this addon was built without CUDA; build the CUDA variant with `npm run build:cuda` (needs the CUDA toolkit)";

[[noreturn]] void unavailable(const char* what) {
  throw Error(ErrorCode::DeviceUnavailable, format("%s: %s", what, kReason));
}

}  // namespace

std::string cuda_unavailable_reason() { return kReason; }

void preprocess_cuda(const media::RgbImage&, int, int, media::ResizeFilter, int, int, const float*, const float*, float*,
                     media::RgbImage*) {
  unavailable("preprocess_cuda");
}

std::vector<uint8_t> keep_mask_cuda(const media::RgbImage&, const media::RgbImage&, int, int, float, const float*,
                                    const float*) {
  unavailable("keep_mask_cuda");
}

void merge_tokens_cuda(const float*, int64_t, int64_t, int, float*) { unavailable("merge_tokens_cuda"); }

}  // namespace vl3::kernels
