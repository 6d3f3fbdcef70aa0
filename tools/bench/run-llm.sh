#!/usr/bin/env bash
# Side-by-side LLM benchmark: ours vs node-llama-cpp 3.21.1 on the same llm.gguf files, one engine
# per process, alone on the machine (ggml threads busy-wait: never run two at once).
# Usage: tools/bench/run-llm.sh <model-dir>... (folders made by `videollama3 convert`)
# Env: PP (512) TG (64) THREADS (2) REPS (3) ROUNDS (1). Rounds alternate which engine goes first, and
# the machine's read bandwidth (tools/bench/readbw.c) is measured before every engine run: it drifts
# by the minute on a shared VM, so the summary divides by the mean of all those measurements.
# Prints one JSON line per run; `node tools/bench/summarize-llm.mjs < out.jsonl` makes the table.
set -euo pipefail
cd "$(dirname "$0")/../.."
readbw="${TMPDIR:-/tmp}/vl3-readbw"
cc -O3 -march=native -ffast-math -fopenmp -o "$readbw" tools/bench/readbw.c
args=("${PP:-512}" "${TG:-64}" "${THREADS:-2}" "${REPS:-3}")
bench() {  # engine target
  OMP_NUM_THREADS="${THREADS:-2}" "$readbw" 1024 5
  node tools/bench/llm-bench.mjs "$1" "$2" "${args[@]}"
}
for round in $(seq "${ROUNDS:-1}"); do
  for dir in "$@"; do
    if (( round % 2 )); then
      bench ours "$dir"
      bench nlc "$dir/llm.gguf"
    else
      bench nlc "$dir/llm.gguf"
      bench ours "$dir"
    fi
  done
done
OMP_NUM_THREADS="${THREADS:-2}" "$readbw" 1024 5
