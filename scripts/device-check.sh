#!/usr/bin/env bash
# The GPU check of issue 5, run from the repository root on a machine with an NVIDIA GPU:
#   1. builds the CUDA variant for this GPU with all cores -> build-cuda/videollama3.node;
#   2. runs the kernel tests (each CUDA kernel against its CPU reference) and the tiny-model parity,
#      generation and video suites with that addon, where device 'auto' picks the GPU;
#   3. benchmarks 2B-shaped random weights on the GPU: our LLM prefill/decode, 448x448 vision
#      encode, one-image TTFT and decode, 16-frame 720p video TTFT (tools/bench/*.mjs), and
#      transformers bf16 + sdpa on the same GPU and inputs (tools/bench/torch_bench.py) when python3
#      has torch and transformers. node-llama-cpp's CUDA build is not run: its prebuilt package
#      is too large to carry to a machine without network.
# Everything lands in $OUT (default ./device-results): gpu.txt, build.log, tests.log, tests.json,
# bench-*.json, summary.txt. Phases have time limits so the whole run stays under 10 minutes on
# an H100 (build ~4-5 min with 16 cores for one architecture).
# No network is needed. Without Node.js on the machine, run scripts/device-pack.sh where there is
# one and bring .device/ and dist/ along; this script unpacks them.
# Env: VL3_SKIP_BUILD=1 reuses build-cuda/videollama3.node; VL3_SKIP_BENCH=1; VL3_BENCH_REPS (2).
# On this workplace's lent GPU machine: run `bash scripts/device-pack.sh` here, then the device tool's
# run with command "bash scripts/device-check.sh", carry [".device", "dist"] (about 61 MB with the
# checkout), timeout_s 600. Checked here without a GPU (the GPU parts skip or fail with their reason).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/device-results}"
mkdir -p "$OUT"
START=$(date +%s)
say() { echo "[device-check +$(( $(date +%s) - START ))s] $*" | tee -a "$OUT/summary.txt"; }

# --- tools --------------------------------------------------------------------------------------
if ! command -v node >/dev/null 2>&1 && [ -f .device/node.xz ]; then
  mkdir -p /tmp/vl3-node/bin && xz -dc .device/node.xz > /tmp/vl3-node/bin/node && chmod +x /tmp/vl3-node/bin/node
  export PATH="/tmp/vl3-node/bin:$PATH"
fi
command -v node >/dev/null 2>&1 || { say "FAIL: no node (run scripts/device-pack.sh and carry .device)"; exit 1; }
[ -d node_modules ] || { [ -f .device/node_modules.tar.xz ] && tar xJf .device/node_modules.tar.xz; }
[ -d deps/ggml ] || { [ -f .device/ggml.tar.xz ] && tar xJf .device/ggml.tar.xz; }
[ -f dist/index.js ] || node scripts/build-ts.mjs
nvidia-smi > "$OUT/gpu.txt" 2>&1 || true
say "node $(node --version), $(nproc) cores, GPU: $(nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader 2>/dev/null | head -1)"

# --- 1. build -----------------------------------------------------------------------------------
# The toolkit's cuBLAS when it has one; else the pip wheel's (nvidia-cublas, as on the lent machines).
# The addon needs libcudart.so.13 and libcublas.so.13 at run time: toolkit lib64 and wheel lib dirs.
# The toolkit: CUDA_HOME, else where `nvcc` says it lives (nvcc may be a wrapper script), else /usr/local/cuda.
TOOLKIT="${CUDA_HOME:-$(dirname "$(dirname "$(nvcc -v -x cu /dev/null -E 2>&1 | sed -n 's/^#\$ TOP=//p' | head -1)/bin/x")")}"
[ -d "$TOOLKIT/lib64" ] || TOOLKIT=/usr/local/cuda
if [ -z "${CUBLAS_ROOT:-}" ] && [ ! -f "$TOOLKIT/include/cublas_v2.h" ]; then
  for d in "$PWD/.cuda-deps/nvidia/cu13" $(python3 -c 'import nvidia, os; print(" ".join(os.path.join(p, "cu13") for p in nvidia.__path__))' 2>/dev/null); do
    [ -f "$d/include/cublas_v2.h" ] && export CUBLAS_ROOT="$d" && break
  done
fi
export LD_LIBRARY_PATH="${CUBLAS_ROOT:+$CUBLAS_ROOT/lib:}$TOOLKIT/lib64:${LD_LIBRARY_PATH:-}"
if [ "${VL3_SKIP_BUILD:-0}" != 1 ]; then
  say "building the CUDA variant (CUBLAS_ROOT=${CUBLAS_ROOT:-toolkit})"
  CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) timeout 420 node scripts/build-native.mjs --cuda \
    --build-dir build-cmake/cuda --out build-cuda > "$OUT/build.log" 2>&1
  rc=$?
  say "build exit $rc ($(du -h build-cuda/videollama3.node 2>/dev/null | cut -f1))"
  [ $rc = 0 ] || { tail -40 "$OUT/build.log"; exit 1; }
fi
export VL3_ADDON_PATH="$PWD/build-cuda/videollama3.node"
# The tests must run this addon, not quietly fall back to another build: load it here first.
if ! node -e "const b=require(process.env.VL3_ADDON_PATH);console.log(JSON.stringify({devices:b.buildInfo.devices,kernels:b.kernels.cudaUnavailableReason()||'ok'}))" \
  >> "$OUT/summary.txt" 2>&1; then
  say "FAIL: $VL3_ADDON_PATH does not load (LD_LIBRARY_PATH=$LD_LIBRARY_PATH)"; tail -3 "$OUT/summary.txt"; exit 1
fi
tail -1 "$OUT/summary.txt"

# --- 2. tests on the GPU ------------------------------------------------------------------------
say "tests: kernels, parity, generate, video"
timeout 240 npx vitest run test/kernels.test.ts test/parity.test.ts test/generate.test.ts test/video-generate.test.ts \
  --reporter=default --reporter=json --outputFile.json="$OUT/tests.json" > "$OUT/tests.log" 2>&1
say "tests exit $? : $(sed 's/\x1b\[[0-9;]*m//g' "$OUT/tests.log" | grep -E 'Tests +[0-9]' | tail -1)"

# --- 3. benchmarks ------------------------------------------------------------------------------
[ "${VL3_SKIP_BENCH:-0}" = 1 ] && exit 0
REPS="${VL3_BENCH_REPS:-2}"
M=/tmp/vl3-2b
if [ ! -f "$M-hf/config.json" ]; then
  # video budget 602112 px shared by the frames (the processor class default; torch_bench.py below)
  timeout 120 node tools/bench/make-checkpoint.mjs "$M-hf" > "$OUT/bench-make.log" 2>&1 &&
    echo '{"size": {"shortest_edge": 12544, "longest_edge": 602112}, "max_frames": 180, "fps": 1}' \
      > "$M-hf/video_preprocessor_config.json"
  say "2B-shaped checkpoint: exit $?"
fi
for q in q8_0 f16; do
  [ -f "$M-$q/llm.gguf" ] || timeout 150 node dist/cli/main.js convert "$M-hf" "$M-$q" --type "$q" >> "$OUT/bench-make.log" 2>&1
done
for q in q8_0 f16; do
  VL3_DEVICE=cuda timeout 90 node tools/bench/llm-bench.mjs ours "$M-$q" 512 128 1 "$REPS" > "$OUT/bench-llm-$q.json" 2>&1
  say "llm $q: $(grep -m1 -E '^\{|Error' "$OUT/bench-llm-$q.json" | cut -c1-300)"
done
timeout 150 node tools/bench/vision-bench.mjs "$M-q8_0" 1 "$REPS" --device cuda --video-noise > "$OUT/bench-vision.json" 2>&1
say "vision (ours): $(grep -m1 -E '^\{|Error' "$OUT/bench-vision.json" | cut -c1-400)"
if python3 -c 'import torch, transformers; assert torch.cuda.is_available()' 2>/dev/null; then
  timeout 240 python3 tools/bench/torch_bench.py --device cuda --reps "$REPS" --dtype bfloat16 --video \
    --video-longest-edge 602112 > "$OUT/bench-torch.json" 2> "$OUT/bench-torch.log"
  say "transformers bf16 sdpa: $(tail -1 "$OUT/bench-torch.json" | cut -c1-400)"
else
  say "transformers on the GPU not available here: peer benchmark skipped"
fi
say "done"
