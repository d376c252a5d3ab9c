#!/usr/bin/env bash
# Reproduces docs/results/cluster.md: 3 kvwise servers (+ Redis as the shared tier and the KV-event
# bus) behind `kvwise route`, under `kvwise loadgen` replaying the Mooncake conversation trace scaled
# down (one conversation in 8, 16-token blocks), per routing policy, with and without the shared
# tier; next to `kvwise sim --routing P --instances 3` on the very scaled trace loadgen sent.
# Usage: scripts/bench-cluster.sh [OUT]   (OUT default docs/results/cluster-raw)
# Env: KVWISE_DATA, REQUESTS (default 4000 trace requests before sampling), CAPACITY (blocks per server).
set -euo pipefail
cd "$(dirname "$0")/.."
kv=$PWD/build/apps/kvwise/kvwise
data=${KVWISE_DATA:-../shared}
out=${1:-docs/results/cluster-raw}
requests=${REQUESTS:-4000}
cap=${CAPACITY:-300}
mkdir -p "$out"
rm -f "$out"/servers.log
base=18400
redis_port=18399
scale=(--sample 8 --block-tokens 16 --output-scale 0.03125 --max-output 16 --time-scale 0.05)
trace=$data/traces/mooncake-fast25/conversation_trace.jsonl

wait_health() {  # PORT
  for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$1/health" > /dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "nothing healthy on port $1" >&2
  return 1
}
pids=()
stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2> /dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2> /dev/null || true; done
  pids=()
}
trap stop_all EXIT

# The per-instance latency model of the simulator, measured on this machine now.
"$kv" bench -t 1 -p 512 -n 64 -r 3 --json > "$out/bench.json"
tg=$(python3 -c "import json,sys; print(next(r['tokens_per_second'] for r in json.load(open(sys.argv[1]))['results'] if r['test'].startswith('tg')))" "$out/bench.json")

for shared in off on; do
  for routing in round-robin least-load prefix cost; do
    name=$routing-$shared
    echo "cluster: $name" >&2
    serve_args=(-t 1 --max-batch 8 --max-queue 100000 --prefix-cache-blocks "$cap" --block-tokens 16)
    route_args=(--routing "$routing" --block-tokens 16)
    if [ $shared = on ]; then
      redis-server --port $redis_port --bind 127.0.0.1 --save '' --appendonly no --dir "$out" \
        --logfile redis.log > /dev/null &
      pids+=($!)
      for _ in $(seq 1 100); do redis-cli -p $redis_port ping > /dev/null 2>&1 && break; sleep 0.05; done
      serve_args+=(--prefix-cache-redis redis://127.0.0.1:$redis_port)
      route_args+=(--kv-events redis://127.0.0.1:$redis_port)
    fi
    backends=()
    for i in 0 1 2; do
      port=$((base + i))
      "$kv" serve --port $port "${serve_args[@]}" 2>> "$out/servers.log" > /dev/null &
      pids+=($!)
      backends+=(--backend http://127.0.0.1:$port)
    done
    for i in 0 1 2; do wait_health $((base + i)); done
    "$kv" route --port $((base + 9)) "${route_args[@]}" "${backends[@]}" 2>> "$out/servers.log" > /dev/null &
    pids+=($!)
    wait_health $((base + 9))
    "$kv" loadgen --port $((base + 9)) --requests "$requests" "${scale[@]}" --label "$name" \
      --write-trace "$out/trace.jsonl" --json "$out/live-$name.json" > "$out/live-$name.txt"
    curl -s "http://127.0.0.1:$((base + 9))/metrics" > "$out/router-$name.metrics"
    for i in 0 1 2; do curl -s "http://127.0.0.1:$((base + i))/metrics" > "$out/server$i-$name.metrics"; done
    stop_all
    sleep 0.5
  done
done

sim=(--trace "$out/trace.jsonl" --format bailian --categories turn --policies lru --capacity "$cap" --instances 3
  --routing all --cost-from "$out/bench.json" --decode-tps "$tg")
"$kv" sim "${sim[@]}" --shared-tier-blocks 0,1000000 --json --plot "$out/sim" > "$out/sim.json"
"$kv" sim "${sim[@]}" --shared-tier-blocks 0,1000000 > "$out/sim.txt"
# The simulator's view of the full-size trace: routing x 1/2/4/8 instances x shared tier.
"$kv" sim --trace "$trace" --policies lru --capacity 2000 --routing all --instances 1,2,4,8 \
  --shared-tier-blocks 0,20000 --model-shape llama3-8b --prefill-tps 10000 --json --plot "$out/mooncake" \
  > "$out/mooncake.json"
"$kv" sim --trace "$trace" --policies lru --capacity 2000 --routing all --instances 1,2,4,8 \
  --shared-tier-blocks 0,20000 --model-shape llama3-8b --prefill-tps 10000 > "$out/mooncake.txt"
"$kv" sim --policies lru --capacity 500 --routing all --instances 1,2,4,8 --shared-tier-blocks 0,5000 \
  --prefill-tps 10000 --json --plot "$out/synthetic" > "$out/synthetic.json"
/usr/bin/python3 tools/cluster_tables.py "$out" > "$out/tables.md"
echo "wrote $out/tables.md" >&2
