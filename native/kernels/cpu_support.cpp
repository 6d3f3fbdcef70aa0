#include "kernels/cpu_support.h"

#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) || defined(_M_X64)
#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>  // __cpuidex, _xgetbv (clang-cl takes the GCC/clang way: its _xgetbv needs -mxsave)
#else
#include <cpuid.h>
#endif
#endif

namespace vl3::kernels {

#if defined(__x86_64__) || defined(_M_X64)
namespace {
// cpuid(leaf, subleaf) -> eax, ebx, ecx, edx. (__builtin_cpu_supports is GCC/clang only, and
// clang before 16 rejects "f16c"; MSVC has neither.)
void cpuid(unsigned leaf, unsigned sub, unsigned r[4]) {
#if defined(_MSC_VER) && !defined(__clang__)
  int v[4];
  __cpuidex(v, static_cast<int>(leaf), static_cast<int>(sub));
  for (int i = 0; i < 4; ++i) r[i] = static_cast<unsigned>(v[i]);
#else
  __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
#endif
}
// XCR0: which register state the OS saves on a context switch.
unsigned long long xcr0() {
#if defined(_MSC_VER) && !defined(__clang__)
  return _xgetbv(0);
#else
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<unsigned long long>(hi) << 32) | lo;
#endif
}
}  // namespace
#endif

bool cpu_has_avx2_fma_f16c() {
#if defined(__x86_64__) || defined(_M_X64)
  static const bool ok = [] {
    unsigned r[4];
    cpuid(0, 0, r);
    if (r[0] < 7) return false;
    cpuid(1, 0, r);
    const bool fma = (r[2] >> 12) & 1, osxsave = (r[2] >> 27) & 1, avx = (r[2] >> 28) & 1, f16c = (r[2] >> 29) & 1;
    if (!fma || !osxsave || !avx || !f16c || (xcr0() & 6) != 6) return false;  // + the OS saves XMM and YMM state
    cpuid(7, 0, r);
    return ((r[1] >> 5) & 1) != 0;  // AVX2
  }();
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
