// cuda_unavailable_reason() of a CUDA build: whether a device and a driver are usable.
#include <cuda_runtime.h>

#include "common/status.h"
#include "kernels/kernels.h"

namespace vl3::kernels {

std::string cuda_unavailable_reason() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return format("no usable NVIDIA GPU: %s (%s)", cudaGetErrorName(err), cudaGetErrorString(err));
  }
  if (count == 0) return "no NVIDIA GPU found";
  return "";
}

}  // namespace vl3::kernels
