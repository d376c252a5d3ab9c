#!/usr/bin/env bash
# Reproduces the bundled model and the shipped gates from the shared data, with fixed seeds:
#   1. tools/train/train.py      -> models/kvwise-retrieval.gguf (+ .train.csv, .train.json)
#   2. tools/train/train_gate.py -> models/kvwise-retrieval.gate.gguf, models/stories260K.gate.gguf
#   3. tools/train/plot_curve.py -> models/kvwise-retrieval.train.svg
# About 70 minutes on 2 cores. Installs Debian's PyTorch and OpenBLAS (apt) if missing. Threads are not
# bit-deterministic in PyTorch, so a rerun gives a model of the same quality, not the same bytes.
set -euo pipefail
cd "$(dirname "$0")/.."
packages=(python3 python3-numpy python3-torch libopenblas0-pthread)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
data=${KVWISE_DATA:-../shared}
py=/usr/bin/python3
set -x
$py tools/train/train.py --data-dir "$data" --out models/kvwise-retrieval.gguf
$py tools/train/train_gate.py --data-dir "$data" --model models/kvwise-retrieval.gguf --steps 2000 --head-dim 32 --seqs 64
$py tools/train/train_gate.py --data-dir "$data" --model "$data/models/stories260K/stories260K.gguf" \
  --out models/stories260K.gate.gguf --mix text --steps 2000 --head-dim 32 --seqs 64
$py tools/train/plot_curve.py models/kvwise-retrieval.train.csv models/kvwise-retrieval.train.svg
