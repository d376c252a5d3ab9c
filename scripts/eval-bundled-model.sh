#!/usr/bin/env bash
# Long-context tables for the bundled model (models/kvwise-retrieval.gguf): passkey and needle
# retrieval and teacher-forced fidelity for every policy at 50/25/10 % budgets (budget-free policies
# once), on held-out text: the needle haystack and the fidelity text are Paul Graham essays the model
# never saw in training (the first four in sorted order). Writes docs/results/bundled-model/.
# Takes about 3 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${KVWISE_DATA:-../shared}
out=${OUT:-docs/results/bundled-model}
threads=${THREADS:-2}
model=models/kvwise-retrieval.gguf
kvwise=build/apps/kvwise/kvwise
essays=$data/data/paul_graham_essays
mkdir -p "$out"
{ lscpu | grep -E 'Model name|^CPU\(s\)'; free -g | head -2; } > "$out/machine.txt"
held=$(mktemp -d)
trap 'rm -rf "$held"' EXIT
# The held-out essays (tools/train/tasks.py HELD_OUT_ESSAYS = 4) as the needle haystack and fidelity text.
for f in $(ls "$essays"/*.txt | sort | head -4); do cp "$f" "$held/"; done
cat "$held"/*.txt > "$held/all.text"

set -x
"$kvwise" profile -m "$model" -t "$threads" -f "$held/all.text" -o "$out/baklava-profile.json" --budget 0.25 \
  --thetas 0,0.5,1,2,4 > "$out/baklava-profile.log"
policies="full,random,streamingllm,h2o,snapkv,pyramidkv,adakv,cake,sagekv,baklava(profile=$out/baklava-profile.json),gate,gate(window=32),mikv,kv-int8,kv-int4,specache(cold=memory)"
depths=0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1
# Retrieval, every policy at every budget (NIAH_POLICIES=full for the full cache only); 4 lengths up to
# the model's context x 11 depths = 44 cases per cell.
niah_policies=${NIAH_POLICIES:-$policies}
lengths=256,512,768,1014
"$kvwise" eval niah -m "$model" -t "$threads" --task passkey --lengths "$lengths" --depths "$depths" --answer-tokens 10 \
  --policies "$niah_policies" --budgets 0.5,0.25,0.1 --plot "$out/passkey" > "$out/passkey.md"
# The same passkeys with the answer's leading space at the end of the prompt (--answer-prefix " "): on
# this tokenizer the query that reads the key is then the prompt's last, which prompt-time selectors
# (SnapKV and its kin) see.
"$kvwise" eval niah -m "$model" -t "$threads" --task passkey --lengths "$lengths" --depths "$depths" --answer-tokens 10 \
  --answer-prefix " " --policies "$niah_policies" --budgets 0.5,0.25,0.1 --plot "$out/passkey-spaced" \
  > "$out/passkey-spaced.md"
"$kvwise" eval niah -m "$model" -t "$threads" --task needle --haystack "$held" --lengths "$lengths" --depths "$depths" \
  --answer-tokens 10 --policies "$niah_policies" --budgets 0.5,0.25,0.1 --plot "$out/needle" > "$out/needle.md"
"$kvwise" eval fidelity -m "$model" -t "$threads" -f "$held/all.text" --prefix 768 --continuation 128 --segments 8 \
  --page-tokens 8 --policies "$policies" --budgets 0.5,0.25,0.1 --plot "$out/fidelity" > "$out/fidelity.md"
"$kvwise" perplexity -m "$model" -t "$threads" -f "$held/all.text" --json > "$out/perplexity-heldout-essays.json"

# llama.cpp loads the same file: run when the benchmark chroot exists (scripts/llamacpp-chroot.sh).
root=${LLAMACPP_ROOT:-/opt/kvwise-sid}
if [ -x "$root/usr/bin/llama-completion" ]; then
  filler="The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
  prompt="$filler $filler $filler The pass key is 52871. Remember it. 52871 is the pass key. $filler $filler

What is the pass key? The pass key is"
  mkdir -p "$root/tmp/kvwise-bench"
  cp "$model" "$root/tmp/kvwise-bench/kvwise-retrieval.gguf"
  chroot "$root" llama-completion -m /tmp/kvwise-bench/kvwise-retrieval.gguf -p "$prompt" -n 8 --temp 0 -t "$threads" \
    2>/dev/null | tail -c 60 > "$out/llamacpp-passkey.txt"
  "$kvwise" generate -m "$model" -p "$prompt" -n 8 --temp 0 -t "$threads" 2>/dev/null | tail -c 60 > "$out/kvwise-passkey.txt"
fi
