#!/usr/bin/env bash
# Reproduces docs/results/prefix-cache.md: every registered policy on the Mooncake conversation trace
# (whole, and each half) and on the generated Bailian-schema workload, capacities 1,000-50,000 blocks;
# the hazard policy's tuning sets and ablations; hit ratio at equal bytes with f16/int8/int4 blocks;
# the fidelity of int8/int4 cached prefixes; the WA category-rule and ablation comparisons. Outputs
# JSON, CSV and SVG plots under OUT (default docs/results/prefix-cache); the markdown tables of the
# doc come from tools/prefix_tables.py OUT.
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
# Generalisation: hazard's defaults were chosen on the first half (and synthetic seed 2), scored on the second.
caps_h=1000,2000,5000,10000,20000
$kv sim --trace "$trace" --capacity $caps_h --score-range 0:0.5 "${common[@]}" --json > "$out/mooncake-first-half.json"
$kv sim --trace "$trace" --capacity $caps_h --score-range 0.5:1 "${common[@]}" --json --plot "$out/mooncake-second-half" > "$out/mooncake-second-half.json"
# Hit ratio at equal bytes: the bytes of N f16 blocks (64 MiB each) hold 1.78x int8 / 3.2x int4 blocks.
bytes=$(python3 -c "print(','.join(str(n * 64 * 2**20) for n in (1000, 2000, 5000, 10000, 20000)))")
for d in f16 int8 int4; do
  $kv sim --trace "$trace" --capacity-bytes "$bytes" --block-dtype $d "${common[@]}" --json > "$out/mooncake-bytes-$d.json"
done
# The bound of perfect reuse prediction without timing (lru-oracle: LRU that evicts never-again blocks first).
$kv sim --trace "$trace" --capacity $caps_h --policies lru,hazard,lru-oracle,belady "${common[@]}" --json > "$out/mooncake-bounds.json"
# hazard ablations, each against the defaults.
$kv sim --trace "$trace" --capacity $caps_h --policies lru,hazard,belady "${common[@]}" --hazard-no-last-block --json > "$out/mooncake-hazard-no-last-block.json"
$kv sim --trace "$trace" --capacity $caps_h --policies lru,hazard,belady "${common[@]}" --hazard-max-categories 0 --json > "$out/mooncake-hazard-no-categories.json"
$kv sim --trace "$trace" --capacity $caps_h --policies lru,hazard,belady "${common[@]}" --hazard-horizon 120 --json > "$out/mooncake-hazard-fixed-horizon.json"
$kv sim --trace "$trace" --capacity $caps_h --policies lru,hazard,belady "${common[@]}" --hazard-max-uses 0 --json > "$out/mooncake-hazard-no-uses.json"
# Fidelity of attending to int8/int4 cached prefixes (bundled model, and the shared stories260K).
$kv eval prefix-cache --prefix 448 --continuation 64 --segments 16 --passkey-lengths 256,512,1014 \
  --passkey-depths 0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1 --answer-tokens 8 --answer-prefix " " --json > "$out/fidelity-bundled.json"
$kv eval prefix-cache -m "$data/models/stories260K/stories260K.gguf" --prefix 192 --continuation 64 --segments 16 --json > "$out/fidelity-stories260k.json"
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
$kv sim --synthetic-requests 20000 --seed 2 --capacity 500,1000,2000,5000,10000,20000 "${common[@]}" --json > "$out/synthetic-seed2.json"
for rule in none trace; do
  $kv sim --synthetic-requests 20000 --capacity 500,1000,2000,5000,10000 --policies lru,wa --categories $rule "${common[@]}" --json > "$out/synthetic-wa-$rule.json"
done
$kv sim --synthetic-requests 20000 --capacity 500,1000,2000,5000,10000 --policies lru,wa --wa-category-follows-use \
  --wa-window 1800 "${common[@]}" --json > "$out/synthetic-wa-follows-use.json"
# Replay speed: one policy, one capacity, parse included (wall clock of the whole command).
: > "$out/replay-speed.txt"
for p in lru wa hazard; do
  /usr/bin/time -f "%e s wall, %M KiB max RSS" $kv sim --trace "$trace" --policies $p --capacity 5000 --threads 1 "${common[@]}" \
    > /dev/null 2>> "$out/replay-speed.txt"
  echo "  ^ $p, capacity 5000, one thread" >> "$out/replay-speed.txt"
done
echo "wrote $out" >&2
