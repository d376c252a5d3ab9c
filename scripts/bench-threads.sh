#!/usr/bin/env bash
# Decode and prefill at -t 1..4 on this machine: what more threads than usable cores costs. By
# default kvwise runs at most the usable cores (a note says so); KVWISE_OVERSUBSCRIBE=1 runs every
# thread asked for, which shows the pool's hand-off when threads outnumber cores (as when other
# processes take cores away): it spins briefly, then yields, then sleeps, and a loop never waits for
# a thread the OS has not run. Models: the bundled one and a random smollm-135m F16 (in $TMPDIR).
# The settings run interleaved, ROUNDS times, so that a noisy neighbour hits them all alike; the
# table takes the median. Writes OUT (default docs/results/threads/): the bench JSON files,
# machine.txt and table.md.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-docs/results/threads}
threads=${THREADS:-1 2 3 4}
rounds=${ROUNDS:-5}
kv=build/apps/kvwise/kvwise
mkdir -p "$out"
rm -f "$out"/kvwise-*.json
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$kv" make-model --shape smollm-135m -o "$tmp/smollm-135m-f16.gguf" >&2
{ lscpu | grep -E 'Model name|^CPU\(s\)'; echo "usable cores: $(nproc)"; } > "$out/machine.txt"
for round in $(seq "$rounds"); do
  echo "round $round of $rounds" >&2
  for model in bundled:models/kvwise-retrieval.gguf "smollm-135m:$tmp/smollm-135m-f16.gguf"; do
    name=${model%%:*} file=${model#*:}
    for t in $threads; do
      "$kv" bench -m "$file" -t "$t" -p 128 -n 64 -d 0 -r 1 --json 2>/dev/null > "$out/kvwise-$name-t$t-r$round.json"
      KVWISE_OVERSUBSCRIBE=1 "$kv" bench -m "$file" -t "$t" -p 128 -n 64 -d 0 -r 1 --json \
        > "$out/kvwise-$name,oversubscribed-t$t-r$round.json"
    done
  done
done
python3 tools/threads_table.py "$out" > "$out/table.md"
cat "$out/table.md"
