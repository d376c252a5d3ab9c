#!/usr/bin/env bash
# Side-by-side speed of kvwise and llama.cpp's llama-bench on the same random smollm-135m F16 GGUF,
# same thread count, same prompt/decode sizes and context depths. Needs the sid chroot made by
# scripts/llamacpp-chroot.sh. Writes raw outputs to OUT (default docs/results/engine-raw).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-docs/results/engine-raw}
root=${CHROOT:-/opt/kvwise-sid}
threads=${THREADS:-2}
depths=${DEPTHS:-0,4096}
reps=${REPS:-3}
deep=${DEEP_DEPTH:-16384}   # the deepest depth runs once (each repetition re-prefills it)
shape=${SHAPE:-smollm-135m}
mkdir -p "$out" "$root/tmp/kvwise-bench"
model="$root/tmp/kvwise-bench/$shape-f16.gguf"
[ -f "$model" ] || build/apps/kvwise/kvwise make-model --shape "$shape" -o "$model"
{ lscpu | grep -E 'Model name|^CPU\(s\)'; nproc; free -g | head -2; } > "$out/machine.txt"
chroot "$root" dpkg-query -W llama.cpp-tools libggml0 2>/dev/null > "$out/llamacpp-version.txt" || true
for run in "$depths:$reps:" "$deep:1:-deep"; do
  IFS=: read -r d r suffix <<< "$run"
  echo "kvwise bench ($shape, $threads threads, depths $d, $r reps)" >&2
  build/apps/kvwise/kvwise bench -m "$model" -t "$threads" -p 512 -n 64 -d "$d" -r "$r" --json \
    > "$out/kvwise-$shape$suffix.json"
  echo "llama-bench ($shape, $threads threads, depths $d, $r reps)" >&2
  chroot "$root" llama-bench -m "/tmp/kvwise-bench/$shape-f16.gguf" -t "$threads" -p 512 -n 64 -d "$d" -r "$r" \
    -o json > "$out/llamacpp-$shape$suffix.json" 2> "$out/llamacpp-$shape$suffix.log"
done
echo "done: $out" >&2
