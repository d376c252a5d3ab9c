#!/usr/bin/env bash
# Reproduces docs/results/serving.md: the Mooncake conversation trace, scaled down (one conversation
# in 8, 16-token blocks, outputs / 32 capped at 16 tokens), replayed with `kvwise loadgen` against live
# servers on loopback, next to `kvwise sim`'s prediction for the same scaled trace.
#   A. simulator vs live server: every eviction policy, stories260K (fast enough to replay 3,000
#      trace requests per policy), 500-block prefix cache.
#   B. a real-size model (SmolLM-135M shape, F16): kvwise without prefix cache, with LRU, with WA;
#   L. llama.cpp's llama-server on the same file and load (needs scripts/llamacpp-chroot.sh).
# Usage: scripts/bench-serving.sh [OUT]   (OUT default docs/results/serving-raw)
# Env: KVWISE_DATA, SERVE_MODEL (part B's GGUF; part B is skipped when it is missing),
#      LLAMA_CHROOT (default /opt/kvwise-sid; llama-server is skipped when it is missing), PARTS (default "A B L").
set -euo pipefail
cd "$(dirname "$0")/.."
kv=$PWD/build/apps/kvwise/kvwise
data=${KVWISE_DATA:-../shared}
out=${1:-docs/results/serving-raw}
model_b=${SERVE_MODEL:-/opt/kvwise-sid/tmp/kvwise-bench/smollm-135m-f16.gguf}
chroot_dir=${LLAMA_CHROOT:-/opt/kvwise-sid}
parts=${PARTS:-A B L}
port=18231
mkdir -p "$out"
scale=(--sample 8 --block-tokens 16 --output-scale 0.03125 --max-output 16)

wait_health() {
  for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$port/health" > /dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "server on port $port did not come up" >&2
  return 1
}
# `kvwise sim --hold`: requests pin their blocks until they finish, 16 at a time (the servers' batch),
# each at the single-sequence prefill and decode speeds `kvwise bench` measures for the model.
sim_hold() {  # MODEL_ARGS... -- SIM_ARGS...
  local bench_args=() sim_args=()
  while [ "$1" != "--" ]; do bench_args+=("$1"); shift; done
  shift
  sim_args=("$@")
  "$kv" bench "${bench_args[@]}" -t 2 -p 512 -n 64 -r 3 --json > "$out/bench-$name.json"
  local tg
  tg=$(python3 -c "import json,sys; print(next(r['tokens_per_second'] for r in json.load(open(sys.argv[1]))['results'] if r['test'].startswith('tg')))" "$out/bench-$name.json")
  "$kv" sim "${sim_args[@]}" --hold --instances 16 --cost-from "$out/bench-$name.json" --decode-tps "$tg" --json \
    > "$out/sim-$name-hold.json"
}
stop() {
  kill "$1" 2> /dev/null || true
  wait "$1" 2> /dev/null || true
}
serve_kvwise() {  # MODEL_ARGS... ; leaves the pid in $server
  "$kv" serve --port $port -t 2 --max-batch 16 --max-queue 100000 "$@" 2>> "$out/servers.log" > /dev/null &
  server=$!
  wait_health
}

if [[ " $parts " == *" A "* ]]; then
  cap=500
  for p in lru fifo lfu s3fifo gdsf arc wa; do
    echo "A: stories260K, $p" >&2
    serve_kvwise --data-dir "$data" --prefix-cache-blocks $cap --block-tokens 16 --eviction $p
    "$kv" loadgen --data-dir "$data" --port $port --requests 3000 --time-scale 0.05 "${scale[@]}" --label $p \
      --write-trace "$out/trace-stories.jsonl" --json "$out/live-stories-$p.json" > "$out/live-stories-$p.txt"
    stop $server
  done
  sim_stories=(--trace "$out/trace-stories.jsonl" --format bailian --capacity $cap --categories turn
    --policies lru,fifo,lfu,s3fifo,gdsf,arc,wa,belady)
  "$kv" sim "${sim_stories[@]}" --json > "$out/sim-stories.json"
  name=stories sim_hold --data-dir "$data" -- "${sim_stories[@]}"
fi

if [[ " $parts " == *" B "* && -f "$model_b" ]]; then
  cap=500
  # --ctx 4096: every scaled prompt fits (the longest is 3,840 tokens), so nothing is cut, and
  # llama-server's slots below get the same room.
  load=(--requests 2000 --time-scale 0.5 --ctx 4096 "${scale[@]}" --write-trace "$out/trace-smollm.jsonl")
  echo "B: kvwise, no prefix cache" >&2
  serve_kvwise -m "$model_b" --no-prefix-cache
  "$kv" loadgen --port $port "${load[@]}" --label "kvwise, no prefix cache" --json "$out/live-smollm-none.json" \
    > "$out/live-smollm-none.txt"
  stop $server
  for p in lru wa; do
    echo "B: kvwise, $p" >&2
    serve_kvwise -m "$model_b" --prefix-cache-blocks $cap --block-tokens 16 --eviction $p
    "$kv" loadgen --port $port "${load[@]}" --label "kvwise, $p, $cap blocks" --json "$out/live-smollm-$p.json" \
      > "$out/live-smollm-$p.txt"
    stop $server
  done
  sim_smollm=(--trace "$out/trace-smollm.jsonl" --format bailian --capacity $cap --categories turn --policies lru,wa,belady)
  "$kv" sim "${sim_smollm[@]}" --json > "$out/sim-smollm.json"
  name=smollm sim_hold -m "$model_b" -- "${sim_smollm[@]}"
fi
if [[ " $parts " == *" L "* && -f "$model_b" && -x "$chroot_dir/usr/bin/llama-server" ]]; then
  load=(--requests 2000 --time-scale 0.5 --ctx 4096 "${scale[@]}")
  port=$((port + 1))  # a fresh port: the last kvwise server's may still be closing
  echo "B: llama-server" >&2
  inside=${model_b#"$chroot_dir"}
  if [ "$inside" = "$model_b" ]; then  # not under the chroot: copy it in
    cp "$model_b" "$chroot_dir/tmp/serving-model.gguf"
    inside=/tmp/serving-model.gguf
  fi
  # 8 slots of 4,096 tokens (kvwise runs up to 16 sequences of any length); its own prompt cache on.
  chroot "$chroot_dir" llama-server -m "$inside" --host 127.0.0.1 --port $port -t 2 -np 8 \
    -c 32768 2>> "$out/servers.log" > /dev/null &
  server=$!
  wait_health
  "$kv" loadgen --port $port "${load[@]}" --label "llama-server" --json "$out/live-smollm-llama-server.json" \
    > "$out/live-smollm-llama-server.txt"
  stop $server
  chroot "$chroot_dir" llama-server --version > "$out/llama-server-version.txt" 2>&1 || true
fi
python3 tools/serving_table.py "$out" > "$out/tables.md"
echo "wrote $out/tables.md" >&2
