#!/usr/bin/env bash
# Quantized weights side by side, kvwise vs llama-bench, 2 threads, depth 0: a random model of SHAPE
# (default llama-1b, Llama-3.2-1B dims) in TYPE (default q4_0). Writes raw JSON next to the F16 results.
# SHAPE=smollm-135m TYPE=q8_0 gives the second table of docs/results/engine.md.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-docs/results/engine-raw}
root=${CHROOT:-/opt/kvwise-sid}
type=${TYPE:-q4_0}
mkdir -p "$out" "$root/tmp/kvwise-bench"
shape=${SHAPE:-llama-1b}
reps=${REPS:-2}
name="$shape-$type"
model="$root/tmp/kvwise-bench/$name.gguf"
[ -f "$model" ] || build/apps/kvwise/kvwise make-model --shape "$shape" --type "$type" -o "$model"
build/apps/kvwise/kvwise bench -m "$model" -t 2 -p 512 -n 64 -d 0 -r "$reps" --json > "$out/kvwise-$name.json"
chroot "$root" llama-bench -m "/tmp/kvwise-bench/$name.gguf" -t 2 -p 512 -n 64 -d 0 -r "$reps" -o json \
  > "$out/llamacpp-$name.json" 2> "$out/llamacpp-$name.log"
