#include "kernels/cpu_support.h"

#include <cstdlib>
#include <cstring>

namespace vl3::kernels {

bool cpu_has_avx2_fma_f16c() {
#if defined(__x86_64__) || defined(_M_X64)
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  return ok;
#else
  return false;
#endif
}

bool cpu_kernels_switched_off() {
  const char* env = std::getenv("VL3_CPU_KERNELS");
  return env != nullptr && std::strcmp(env, "ggml") == 0;
}

}  // namespace vl3::kernels
