#!/usr/bin/env bash
# Reproduces docs/results/prefix-cache.md: every policy on the Mooncake conversation trace and on the
# generated Bailian-schema workload, capacities 1,000-50,000 blocks, plus the WA category-rule and
# ablation comparisons. Outputs JSON, CSV and SVG plots under OUT (default docs/results/prefix-cache).
set -euo pipefail
cd "$(dirname "$0")/.."
kv=build/apps/kvwise/kvwise
data=${KVWISE_DATA:-../shared}
out=${OUT:-docs/results/prefix-cache}
mkdir -p "$out"
trace="$data/traces/mooncake-fast25/conversation_trace.jsonl"
caps=1000,2000,5000,10000,20000,50000
# Llama-3-8B KV (128 KiB/token, 64 MiB per 512-token block); prefill speed is an assumption (stated).
common=(--model-shape llama3-8b --prefill-tps 10000 --instances 4)

$kv sim --trace "$trace" --capacity $caps "${common[@]}" --json --csv "$out/mooncake.csv" --plot "$out/mooncake" > "$out/mooncake.json"
$kv sim --trace "$trace" --capacity $caps "${common[@]}" > "$out/mooncake.txt"
caps_wa=1000,2000,5000,10000,20000
for rule in none length turn turn-length; do
  $kv sim --trace "$trace" --capacity $caps_wa --policies lru,wa --categories $rule "${common[@]}" --json > "$out/mooncake-wa-$rule.json"
  $kv sim --trace "$trace" --capacity $caps_wa --policies lru,wa --categories $rule --wa-category-follows-use \
    --wa-window 1800 "${common[@]}" --json > "$out/mooncake-wa-$rule-follows-use.json"
done
$kv sim --trace "$trace" --capacity $caps_wa --policies lru,wa --wa-no-lifespan "${common[@]}" --json > "$out/mooncake-wa-no-lifespan.json"
$kv sim --trace "$trace" --capacity $caps_wa --policies lru,wa --wa-no-probability "${common[@]}" --json > "$out/mooncake-wa-no-probability.json"
$kv sim --trace "$trace" --capacity $caps --policies lru,fifo,lfu,s3fifo,gdsf,arc,wa,belady --wa-category-follows-use \
  --wa-window 1800 "${common[@]}" --json > "$out/mooncake-wa-tuned.json"
$kv sim --synthetic-requests 20000 --capacity 500,1000,2000,5000,10000,20000 "${common[@]}" --json --csv "$out/synthetic.csv" --plot "$out/synthetic" > "$out/synthetic.json"
$kv sim --synthetic-requests 20000 --capacity 500,1000,2000,5000,10000,20000 "${common[@]}" > "$out/synthetic.txt"
for rule in none trace; do
  $kv sim --synthetic-requests 20000 --capacity 500,1000,2000,5000,10000 --policies lru,wa --categories $rule "${common[@]}" --json > "$out/synthetic-wa-$rule.json"
done
$kv sim --synthetic-requests 20000 --capacity 500,1000,2000,5000,10000 --policies lru,wa --wa-category-follows-use \
  --wa-window 1800 "${common[@]}" --json > "$out/synthetic-wa-follows-use.json"
# Replay speed: one policy, one capacity, parse included (wall clock of the whole command).
for p in lru wa; do
  /usr/bin/time -f "%e s wall, %M KiB max RSS" $kv sim --trace "$trace" --policies $p --capacity 5000 --threads 1 \
    > /dev/null 2>> "$out/replay-speed.txt"
  echo "  ^ $p, capacity 5000, one thread" >> "$out/replay-speed.txt"
done
echo "wrote $out" >&2
