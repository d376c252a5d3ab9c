#!/usr/bin/env bash
# Decode and prefill at -t 1..4 on this machine: what more threads than usable cores costs (the pool
# spins briefly, then yields, then sleeps, and a loop never waits for a thread the OS has not run).
# Models: the bundled one and a random smollm-135m F16 (made in $TMPDIR). Writes OUT (default
# docs/results/threads/): one `kvwise bench --json` per model and thread count, machine.txt, table.md.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-docs/results/threads}
threads=${THREADS:-1 2 3 4}
reps=${REPS:-3}
kv=build/apps/kvwise/kvwise
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$kv" make-model --shape smollm-135m -o "$tmp/smollm-135m-f16.gguf" >&2
{ lscpu | grep -E 'Model name|^CPU\(s\)'; echo "nproc: $(nproc)"; } > "$out/machine.txt"
for model in bundled:models/kvwise-retrieval.gguf "smollm-135m:$tmp/smollm-135m-f16.gguf"; do
  name=${model%%:*} file=${model#*:}
  for t in $threads; do
    echo "kvwise bench $name -t $t" >&2
    "$kv" bench -m "$file" -t "$t" -p 128 -n 64 -d 0 -r "$reps" --json > "$out/kvwise-$name-t$t.json"
  done
done
python3 tools/threads_table.py "$out" > "$out/table.md"
cat "$out/table.md"
