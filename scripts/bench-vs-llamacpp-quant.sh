#!/usr/bin/env bash
# Quantized weights side by side, kvwise vs llama-bench, on the files people run: a random-weight model
# of each SHAPE made by `kvwise make-model` in F16, quantized by llama.cpp's own llama-quantize to each
# TYPE (its tensor mix: Q6_K output/embedding, Q6_K ffn_down/attn_v in the _M presets; F16 is the source
# file itself, the check that F16 did not regress). Both engines run
# the same file with 2 threads, at each depth, interleaved ROUNDS times (the table takes the median of the
# rounds, so a noisy neighbour hits both engines alike). DEEP_TYPES run at DEEP_DEPTH once more (one
# round: every repetition re-prefills the depth). Writes OUT: raw JSON per run, machine.txt (CPU, the
# machine's read/copy bandwidth), table.md (tools/quant_table.py).
# Needs the llama.cpp chroot of scripts/llamacpp-chroot.sh. Benchmarks only; nothing in the tests uses it.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-docs/results/quant}
root=${CHROOT:-/opt/kvwise-sid}
shapes=${SHAPES:-llama-1b}
types=${TYPES:-Q4_0 Q4_K_M Q5_K_M Q6_K Q8_0 F16}
rounds=${ROUNDS:-3}
pp=${PP:-256}
tg=${TG:-32}
deep_types=${DEEP_TYPES:-$types}
deep_depth=${DEEP_DEPTH:-4096}
kv=build/apps/kvwise/kvwise
dir="$root/tmp/kvwise-bench"
mkdir -p "$out" "$dir"
rm -f "$out"/kvwise-*.json "$out"/llamacpp-*.json
for shape in $shapes; do
  for type in $types; do
    [ -f "$dir/$shape-$type.gguf" ] && continue
    [ -f "$dir/$shape-f16.gguf" ] || "$kv" make-model --shape "$shape" -o "$dir/$shape-f16.gguf"
    if [ "$type" = F16 ]; then ln -f "$dir/$shape-f16.gguf" "$dir/$shape-F16.gguf"; continue; fi  # the source itself
    chroot "$root" llama-quantize "/tmp/kvwise-bench/$shape-f16.gguf" "/tmp/kvwise-bench/$shape-$type.gguf" "$type" 2 \
      > "$out/quantize-$shape-$type.log" 2>&1
  done
done
{
  lscpu | grep -E 'Model name|^CPU\(s\)|^Flags' | sed 's/^Flags:.*\(avx[^ ]*\).*/AVX: see lscpu/'
  echo "usable cores: $(nproc)"
  chroot "$root" dpkg-query -W llama.cpp-tools 2>/dev/null | sed 's/^/llama.cpp: /'
} > "$out/machine.txt"
first=$(set -- $shapes; echo "$1")-$(set -- $types; echo "$1")
"$kv" bench -m "$dir/$first.gguf" -t 2 -p 0 -n 1 -r 1 --bandwidth 2>/dev/null | grep 'machine bandwidth' >> "$out/machine.txt"
run() {  # shape type depth round reps
  local name="$1-$2" d=$3 r=$4
  "$kv" bench -m "$dir/$name.gguf" -t 2 -p "$pp" -n "$tg" -d "$d" -r 1 --json 2>/dev/null > "$out/kvwise-$name-d$d-r$r.json"
  chroot "$root" llama-bench -m "/tmp/kvwise-bench/$name.gguf" -t 2 -p "$pp" -n "$tg" -d "$d" -r 1 -o json \
    2>/dev/null > "$out/llamacpp-$name-d$d-r$r.json"
}
for round in $(seq "$rounds"); do
  for shape in $shapes; do
    for type in $types; do
      echo "round $round/$rounds: $shape $type depth 0" >&2
      run "$shape" "$type" 0 "$round"
    done
  done
done
if [ "$deep_depth" != 0 ]; then
  for shape in $shapes; do
    for type in $deep_types; do
      echo "$shape $type depth $deep_depth" >&2
      run "$shape" "$type" "$deep_depth" 1
    done
  done
fi
python3 tools/quant_table.py "$out" > "$out/table.md"
cat "$out/table.md"
