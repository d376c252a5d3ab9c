#!/usr/bin/env bash
# What compression costs and what it buys, on the random smollm-135m F16 model (30 layers, 9 query /
# 3 KV heads), 2 threads:
#   1. prefill of a 4096-token prompt with and without each policy (the policy's statistics, scoring,
#      selection and page release are inside the timed prefill), 3 repetitions;
#   2. decode of 64 tokens after a 16384-token prompt, full cache vs policies at a 10 % budget; the
#      untimed-for-tg prefill of the 16K prompt is recorded too (prefill cost at 16K).
# Raw JSON goes to OUT (default docs/results/compression-raw); tools/compression_table.py makes tables.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-docs/results/compression-raw}
threads=${THREADS:-2}
model=${MODEL:-/tmp/kvwise-bench/smollm-135m-f16.gguf}
budget=${BUDGET:-0.1}
pp_policies=${PP_POLICIES:-full snapkv adakv pyramidkv cake sagekv h2o}
tg_policies=${TG_POLICIES:-full snapkv cake h2o sagekv}
kvwise=build/apps/kvwise/kvwise
mkdir -p "$out" "$(dirname "$model")"
[ -f "$model" ] || "$kvwise" make-model --shape smollm-135m -o "$model"
{ lscpu | grep -E 'Model name|^CPU\(s\)'; free -g | head -2; } > "$out/machine.txt"
policy_args() { [ "$1" = full ] || echo "--kv-policy $1 --kv-budget $budget"; }
for p in $pp_policies; do
  echo "pp4096 $p" >&2
  # shellcheck disable=SC2046
  "$kvwise" bench -m "$model" -t "$threads" -p 4096 -n 0 -r 3 $(policy_args "$p") --json > "$out/pp4096-$p.json"
done
for p in $tg_policies; do
  echo "tg64 @ 16384 $p" >&2
  # shellcheck disable=SC2046
  "$kvwise" bench -m "$model" -t "$threads" -p 0 -d 16384 -n 64 -r 1 $(policy_args "$p") --json > "$out/tg64-d16384-$p.json"
done
echo "done: $out" >&2
