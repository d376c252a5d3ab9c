#!/usr/bin/env bash
# Reproduces the leaderboard of docs/results/compression.md: the RULER-style suite (`kvwise eval
# ruler`) on the bundled model, every method x kvpress's compression ratios (0.25, 0.5, 0.75, 0.875:
# the fraction of the KV removed), under the query-aware and the query-agnostic protocol, with the KV
# bytes each policy actually holds and its compression time. DuoAttention's head profile is
# calibrated first (`kvwise profile --method duoattention`, seeded apart from the suite's cases).
# Usage: scripts/bench-compression-leaderboard.sh [OUT]   (OUT default docs/results/compression/ruler)
# Env: MODEL (default the bundled v1; docs/results uses models/kvwise-retrieval-v2.gguf too), SAMPLES
# (cases per task, default 10), LENGTHS (default 500), THREADS (default 2), KVWISE_DATA.
set -euo pipefail
cd "$(dirname "$0")/.."
kv=$PWD/build/apps/kvwise/kvwise
out=${1:-docs/results/compression/ruler}
samples=${SAMPLES:-10}
lengths=${LENGTHS:-500}
threads=${THREADS:-2}
model=()
[ -n "${MODEL:-}" ] && model=(-m "$MODEL")
data=()
[ -n "${KVWISE_DATA:-}" ] && data=(--data-dir "$KVWISE_DATA")
mkdir -p "$out"
"$kv" profile --method duoattention "${model[@]}" "${data[@]}" -t "$threads" -o "$out/duo-profile.json" | tee "$out/duo-profile.txt"
policies="full,random,streamingllm,h2o,snapkv,pyramidkv,adakv,cake,sagekv,tova,knorm,keydiff,expected-attention"
policies+=",kvzip,duoattention(profile=$out/duo-profile.json),chunkkv(snapkv),chunkkv(keydiff),criticalkv(snapkv)"
policies+=",criticalkv(expected-attention(vnorm=0)),adakv(kvzip),decoding(keydiff,prefill=1,every=4),gate"
"$kv" eval ruler "${model[@]}" "${data[@]}" -t "$threads" --both --samples "$samples" --lengths "$lengths" \
  --ratios 0.25,0.5,0.75,0.875 --policies "$policies" --plot "$out" | tee "$out/leaderboard.md"
