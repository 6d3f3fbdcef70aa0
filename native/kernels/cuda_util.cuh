// Shared helpers of our .cu files: CUDA errors as vl3::Error, and an owning device buffer.
// Everything runs on the calling thread's own stream (cudaStreamPerThread), so preprocessing on a
// libuv worker never waits for, or blocks, ggml-cuda's work on its streams.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "common/status.h"

namespace vl3::kernels {

/** Throws OutOfMemory for a failed allocation and DeviceUnavailable for any other CUDA error. */
inline void cuda_check(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return;
  cudaGetLastError();  // reset the last-error state so the next call starts clean
  throw Error(err == cudaErrorMemoryAllocation ? ErrorCode::OutOfMemory : ErrorCode::DeviceUnavailable,
              format("%s: CUDA error %s (%s)", what, cudaGetErrorName(err), cudaGetErrorString(err)));
}

/** A device allocation of `count` elements of T, freed with its owner. */
template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t count, const char* what) : count_(count) {
    if (count_ > 0) cuda_check(cudaMalloc(reinterpret_cast<void**>(&ptr_), count_ * sizeof(T)), what);
  }
  DeviceBuffer(const T* host, size_t count, const char* what) : DeviceBuffer(count, what) {
    if (count_ > 0) {
      cuda_check(cudaMemcpyAsync(ptr_, host, count_ * sizeof(T), cudaMemcpyHostToDevice, cudaStreamPerThread), what);
    }
  }
  ~DeviceBuffer() {
    if (ptr_ != nullptr) {
      cudaStreamSynchronize(cudaStreamPerThread);  // no kernel of this thread may still use it
      cudaFree(ptr_);
    }
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  T* get() const { return ptr_; }
  size_t size() const { return count_; }
  void copy_to(T* host, const char* what) const {
    if (count_ == 0) return;
    cuda_check(cudaMemcpyAsync(host, ptr_, count_ * sizeof(T), cudaMemcpyDeviceToHost, cudaStreamPerThread), what);
    cuda_check(cudaStreamSynchronize(cudaStreamPerThread), what);
  }

 private:
  T* ptr_ = nullptr;
  size_t count_;
};

/** Blocks of `threads` covering `n` items. */
inline unsigned int grid_for(int64_t n, int threads) { return static_cast<unsigned int>((n + threads - 1) / threads); }

/** Checks the launch and waits for this thread's stream, naming the kernel in the error. */
inline void cuda_finish(const char* what) {
  cuda_check(cudaGetLastError(), what);
  cuda_check(cudaStreamSynchronize(cudaStreamPerThread), what);
}

/** The stream every launch of ours uses. */
inline cudaStream_t stream() { return cudaStreamPerThread; }

}  // namespace vl3::kernels
