#!/usr/bin/env bash
# Quantized weights side by side: the random llama-1b shape (Llama-3.2-1B dims) in Q4_0, kvwise vs
# llama-bench, 2 threads, depth 0. Writes raw JSON next to the F16 results.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-docs/results/engine-raw}
root=${CHROOT:-/opt/kvwise-sid}
type=${TYPE:-q4_0}
mkdir -p "$out" "$root/tmp/kvwise-bench"
model="$root/tmp/kvwise-bench/llama-1b-$type.gguf"
[ -f "$model" ] || build/apps/kvwise/kvwise make-model --shape llama-1b --type "$type" -o "$model"
build/apps/kvwise/kvwise bench -m "$model" -t 2 -p 512 -n 64 -d 0 -r 2 --json > "$out/kvwise-llama-1b-$type.json"
chroot "$root" llama-bench -m "/tmp/kvwise-bench/llama-1b-$type.gguf" -t 2 -p 512 -n 64 -d 0 -r 2 -o json \
  > "$out/llamacpp-llama-1b-$type.json" 2> "$out/llamacpp-llama-1b-$type.log"
