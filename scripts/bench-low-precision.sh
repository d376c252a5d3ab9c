#!/usr/bin/env bash
# Low-precision KV (issue 5) on the random smollm-135m F16 model (30 layers, 9 query / 3 KV heads,
# head_dim 64), 2 threads:
#   A. decode attention alone over a 16K-token, 30-layer cache (bench_low_precision), 3 repetitions;
#   B. end-to-end decode of 32 tokens after a 16384-token prompt: the full F16 cache, uniform int8/int4
#      KV, and SpeCache with its cold tier in a file on local disk (and in host memory);
#   C. fidelity and passkey tables on stories260K with the eviction policies, MiKV, kv-int* and SpeCache;
#   D. the speed claims measured fairly: full, kv-int4 and SpeCache decoding 64 steps after a 16384-token
#      prompt in one process, interleaved step by step (bench_decode_ab), so all share the machine state.
# Raw JSON goes to OUT (default docs/results/low-precision-raw); tools/low_precision_table.py makes tables.
# PARTS="A B C D" selects parts.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-docs/results/low-precision-raw}
threads=${THREADS:-2}
parts=${PARTS:-A B C D}
model=${MODEL:-/tmp/kvwise-bench/smollm-135m-f16.gguf}
stories=${STORIES:-../shared/models/stories260K/stories260K.gguf}  # part C (the bundled model is kvwise's default)
cold_dir=${COLD_DIR:-/var/tmp}
kvwise=build/apps/kvwise/kvwise
mkdir -p "$out" "$(dirname "$model")"
{ lscpu | grep -E 'Model name|^CPU\(s\)'; free -g | head -2; df -h "$cold_dir" | tail -1; } > "$out/machine.txt"
if [[ $parts == *A* ]]; then
  echo "A: attention micro benchmark" >&2
  build/bench/bench_low_precision --benchmark_repetitions=3 --benchmark_report_aggregates_only=true \
    --benchmark_format=json > "$out/attention-16k.json"
fi
if [[ $parts == *B* ]]; then
  [ -f "$model" ] || "$kvwise" make-model --shape smollm-135m -o "$model"
  default_b=(full kv-int8 kv-int4 "specache(bits=int1,dir=$cold_dir,prefetch=thread)" "specache(bits=int1,dir=$cold_dir,prefetch=sync)"
    "specache(bits=int1,cold=memory)" "specache(k=int2,v=int1,group=128,dir=$cold_dir)")
  IFS=';' read -r -a b_policies <<< "${B_POLICIES:-$(IFS=';'; echo "${default_b[*]}")}"
  for p in "${b_policies[@]}"; do
    name=$(echo "${p//dir=$cold_dir/}" | tr -c 'a-zA-Z0-9=\n' '_')
    echo "B: tg32 @ 16384 $p" >&2
    args=(); [ "$p" = full ] || args=(--kv-policy "$p")
    "$kvwise" bench -m "$model" -t "$threads" -p 0 -d 16384 -n 32 -r 1 "${args[@]}" --json > "$out/tg32-d16384-$name.json"
  done
fi
if [[ $parts == *C* ]]; then
  pol="random,streamingllm,h2o,snapkv,pyramidkv,adakv,cake,sagekv,mikv,mikv(lo=int4),mikv(snapkv),mikv(adakv(snapkv),lo=int4),mikv(hi=int8,lo=int4),kv-int8,kv-int4,kv-int4(keys=channel),kv-int2,specache,specache(bits=int1),specache(topk=16)"
  echo "C: fidelity (stories260K)" >&2
  "$kvwise" eval fidelity -m "$stories" -t "$threads" --policies "full,$pol" --budgets 0.5,0.25,0.1 --segments 8 --json \
    > "$out/fidelity-stories260k.json"
  echo "C: passkey (stories260K)" >&2
  "$kvwise" eval niah -m "$stories" -t "$threads" --task passkey --policies "full,$pol" --budgets 0.5,0.25,0.1 --json \
    > "$out/passkey-stories260k.json"
fi
if [[ $parts == *D* ]]; then
  [ -f "$model" ] || "$kvwise" make-model --shape smollm-135m -o "$model"
  echo "D: interleaved decode at 16384" >&2
  build/bench/bench_decode_ab "$model" 16384 64 "$threads" full kv-int4 "specache(bits=int1,dir=$cold_dir,prefetch=thread)" \
    "specache(bits=int1,dir=$cold_dir,prefetch=sync)" > "$out/decode-ab-d16384.json"
fi
echo "done: $out" >&2
