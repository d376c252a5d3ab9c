#!/usr/bin/env bash
# Every architecture, both engines, the same files: a random-weight model of each SHAPE (kvwise
# make-model, LAYERS layers each except gemma3 at 6 so that it has a global layer, vocabulary reduced
# to VOCAB so the files stay small, sliding windows of WINDOW tokens so that the prompts cross them,
# embeddings drawn small (EMBED_SCALE) so that the random models' next-token distributions are not one-hot),
# written by kvwise in F16 / Q8_0 / Q4_0 and quantized by llama.cpp's llama-quantize from the F16 file to
# each of LLAMA_TYPES. Each file runs in llama-server and in `kvwise generate`; tools/compare_models.py
# compares greedy tokens and top-5 logprobs (near-ties called out) and, with tools/ref_forward.py, both
# engines against a float64 forward pass. The F16 file is also quantized by `kvwise quantize` to each of
# KV_PRESETS: llama.cpp runs those files too, and tools/compare_mix.py checks that both tools chose the
# same type for every tensor. tools/models_table.py writes the tables.
# Writes OUT (default docs/results/models): cmp-*.json, mix-*.json, quantize logs, machine.txt, table.md.
# Needs the llama.cpp chroot of scripts/llamacpp-chroot.sh. Comparisons only; the tests do not use it.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-docs/results/models}
root=${CHROOT:-/opt/kvwise-sid}
shapes=${SHAPES:-smollm2-135m llama3.2-1b qwen2.5-0.5b qwen3-0.6b gemma2-2b gemma3-1b phi3-mini}
kv_types=${KV_TYPES:-f16 q8_0 q4_0}
llama_types=${LLAMA_TYPES:-Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K_M Q4_K_M Q5_K_M Q6_K IQ4_NL IQ4_XS}
kv_presets=${KV_PRESETS:-Q4_0 Q8_0 Q4_K_M Q5_K_M Q6_K}  # kvwise quantize, from the same F16 file
layers=${LAYERS:-2}
vocab=${VOCAB:-8192}
window=${WINDOW:-64}
embed=${EMBED_SCALE:-0.1}  # soft output distributions, so that the top-5 logprobs say something
prompts=${PROMPTS:-4}
plen=${PROMPT_LEN:-160}
port=${PORT:-18181}
kv=${KVWISE:-$PWD/build/apps/kvwise/kvwise}
dir="$root/tmp/kvwise-models"
mkdir -p "$out" "$dir"
[ -n "${KEEP:-}" ] || rm -f "$out"/cmp-*.json "$out"/mix-*.json  # KEEP=1: add to an earlier run
{
  lscpu | grep -E 'Model name|^CPU\(s\)'
  chroot "$root" dpkg-query -W llama.cpp-tools 2>/dev/null | sed 's/^/llama.cpp: /'
  git rev-parse --short HEAD | sed 's/^/kvwise: /'
} > "$out/machine.txt"
run_pair() {  # FILE(host path) LABEL
  local file=$1 label=$2 inside=${1#"$root"}
  chroot "$root" llama-server -m "$inside" --host 127.0.0.1 --port $port -t 2 -c 4096 -np 1 \
    > "$out/llama-server.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 120); do
    curl -sf "http://127.0.0.1:$port/health" > /dev/null 2>&1 && break
    kill -0 $pid 2> /dev/null || break
    sleep 0.5
  done
  local tag=${label//|/-}
  if curl -sf "http://127.0.0.1:$port/health" > /dev/null 2>&1; then
    /usr/bin/python3 tools/compare_models.py --kvwise "$kv" --model "$file" --port $port --label "$label" \
      --out "$out/cmp-$tag.json" --prompts "$prompts" --prompt-len "$plen" --vocab "$vocab" --exact
  else
    echo "{\"label\": \"$label\", \"error\": \"llama-server did not load it: $(tail -1 "$out/llama-server.log" | tr -d '"\\')\"}" \
      > "$out/cmp-$tag.json"
  fi
  kill $pid 2> /dev/null || true
  wait $pid 2> /dev/null || true
}
for shape in $shapes; do
  n=$layers
  [ "$shape" = gemma3-1b ] && n=6
  extra=()
  case "$shape" in gemma*|phi3*) extra=(--window "$window") ;; esac
  for t in $kv_types; do
    f="$dir/$shape-$t.gguf"
    "$kv" make-model --shape "$shape" --layers "$n" --vocab "$vocab" --type "$t" --embed-scale "$embed" "${extra[@]}" \
      -o "$f" 2> /dev/null
    run_pair "$f" "$shape|${t^^}|kvwise"
    [ "$t" = f16 ] || rm -f "$f"
  done
  for t in $llama_types; do
    f="$dir/$shape-llama-$t.gguf"
    chroot "$root" llama-quantize "/tmp/kvwise-models/$shape-f16.gguf" "/tmp/kvwise-models/$shape-llama-$t.gguf" "$t" 2 \
      > "$out/quantize-$shape-$t.log" 2>&1
    run_pair "$f" "$shape|$t|llama-quantize"
    rm -f "$f"
  done
  for t in $kv_presets; do  # kvwise's own quantization: llama.cpp must run it, and its mix must match
    f="$dir/$shape-kvwise-$t.gguf"
    "$kv" quantize "$dir/$shape-f16.gguf" "$f" "$t" 2> "$out/kvwise-quantize-$shape-$t.log"
    [ -f "$out/quantize-$shape-$t.log" ] || chroot "$root" llama-quantize "/tmp/kvwise-models/$shape-f16.gguf" \
      "/tmp/kvwise-models/$shape-llama-$t.gguf" "$t" 2 > "$out/quantize-$shape-$t.log" 2>&1
    rm -f "$dir/$shape-llama-$t.gguf"
    /usr/bin/python3 tools/compare_mix.py "$out/kvwise-quantize-$shape-$t.log" "$out/quantize-$shape-$t.log" \
      "$shape|$t" "$out/mix-$shape-$t.json"
    run_pair "$f" "$shape|$t|kvwise quantize"
    rm -f "$f"
  done
  rm -f "$dir/$shape-f16.gguf"
done
/usr/bin/python3 tools/models_table.py "$out" > "$out/table.md"
cat "$out/table.md"
