// What our CPU kernels (int8_matmul, attention) need from the machine and the environment, in one
// place: the instruction sets their SIMD code is compiled for, and the switch that turns them off.
#pragma once

namespace vl3::kernels {

/** Whether this CPU runs AVX2, FMA and F16C (what the kernels' SIMD code targets); false off x86-64. */
bool cpu_has_avx2_fma_f16c();

/** Whether VL3_CPU_KERNELS is "ggml": ggml's kernels everywhere (the switch tests and benchmarks use to compare). */
bool cpu_kernels_switched_off();

}  // namespace vl3::kernels
