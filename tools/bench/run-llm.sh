#!/usr/bin/env bash
# Side-by-side LLM benchmark: ours vs node-llama-cpp 3.21.1 on the same llm.gguf files, one engine
# per process, alone on the machine (ggml threads busy-wait: never run two at once).
# Usage: tools/bench/run-llm.sh <model-dir>... (folders made by `videollama3 convert`)
# Env: PP (512) TG (64) THREADS (2) REPS (3). Prints one JSON line per run.
set -euo pipefail
cd "$(dirname "$0")/../.."
for dir in "$@"; do
  node tools/bench/llm-bench.mjs ours "$dir" "${PP:-512}" "${TG:-64}" "${THREADS:-2}" "${REPS:-3}"
  node tools/bench/llm-bench.mjs nlc "$dir/llm.gguf" "${PP:-512}" "${TG:-64}" "${THREADS:-2}" "${REPS:-3}"
done
