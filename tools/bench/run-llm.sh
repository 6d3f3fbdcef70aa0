#!/usr/bin/env bash
# Side-by-side LLM benchmark: ours vs node-llama-cpp 3.21.1 on the same llm.gguf files, one engine
# per process, alone on the machine (ggml threads busy-wait: never run two at once).
# Usage: tools/bench/run-llm.sh <model-dir>... (folders made by `videollama3 convert`)
# Env: PP (512) TG (64) THREADS (2) REPS (3) ROUNDS (1). Rounds alternate which engine goes first, and
# each starts with the machine's read bandwidth (tools/bench/readbw.c), so drift on a shared VM shows.
# Prints one JSON line per run; `node tools/bench/summarize-llm.mjs < out.jsonl` makes the table.
set -euo pipefail
cd "$(dirname "$0")/../.."
readbw="${TMPDIR:-/tmp}/vl3-readbw"
cc -O3 -march=native -ffast-math -fopenmp -o "$readbw" tools/bench/readbw.c
args=("${PP:-512}" "${TG:-64}" "${THREADS:-2}" "${REPS:-3}")
for round in $(seq "${ROUNDS:-1}"); do
  OMP_NUM_THREADS="${THREADS:-2}" "$readbw" 1024 5
  for dir in "$@"; do
    if (( round % 2 )); then
      node tools/bench/llm-bench.mjs ours "$dir" "${args[@]}"
      node tools/bench/llm-bench.mjs nlc "$dir/llm.gguf" "${args[@]}"
    else
      node tools/bench/llm-bench.mjs nlc "$dir/llm.gguf" "${args[@]}"
      node tools/bench/llm-bench.mjs ours "$dir" "${args[@]}"
    fi
  done
done
