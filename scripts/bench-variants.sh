#!/usr/bin/env bash
# Compares the CPU build variants on this machine with `videollama3 bench-matmul` (ggml mul_mat,
# best of N). Run alone on an idle machine: ggml threads busy-wait. Needs `npm run build` (native)
# and `npm run prebuildify` first. Prints one JSON line per (variant, shape).
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${THREADS:-2}
run() { # variant env...
  local label=$1; shift
  for shape in "q8_0 1 4096 4096" "q4_K 1 4096 4096" "q8_0 512 4096 4096" "f16 512 4096 4096"; do
    set -- $shape
    env "${ENVS[@]}" node dist/cli/main.js bench-matmul --type "$1" --m "$2" --n "$3" --k "$4" --threads "$threads" --reps 5 |
      sed "s/^{/{\"variant\":\"$label\",/"
  done
}
ENVS=(VL3_X=1); run native
ENVS=(PREBUILDS_ONLY=1 VL3_CPU_VARIANT=baseline); run sse42
for v in avx2 avx512 amx; do ENVS=(PREBUILDS_ONLY=1 VL3_CPU_VARIANT=$v); run "$v-requested"; done
