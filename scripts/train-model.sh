#!/usr/bin/env bash
# Reproduces the bundled model (v1) and the shipped gates from the shared data, with fixed seeds:
#   1. tools/train/train.py: a copying phase at context 64, then the task mix at contexts
#      128 -> 256 -> 512 -> 1024 (1,850 steps) -> models/kvwise-retrieval.gguf (+ .train.csv, .train.json)
#   2. tools/train/train_gate.py -> models/kvwise-retrieval.gate.gguf, models/stories260K.gate.gguf
#   3. tools/train/plot_curve.py -> models/kvwise-retrieval.train.svg
# About 42 minutes on 2 cores (37 of them the model). Installs Debian's PyTorch and OpenBLAS (apt)
# if missing. PyTorch's threaded kernels are not bit-deterministic, so a rerun gives a model of the
# same quality, not the same bytes. models/README.md is the model card.
set -euo pipefail
cd "$(dirname "$0")/.."
packages=(python3 python3-numpy python3-torch libopenblas0-pthread)
scripts/apt-install.sh "${packages[@]}"
data=${KVWISE_DATA:-../shared}
py=/usr/bin/python3
set -x
$py tools/train/train.py --data-dir "$data" --out models/kvwise-retrieval.gguf \
  --phases 64:250:copy,128:450,256:400,512:350,1024:400
$py tools/train/train_gate.py --data-dir "$data" --model models/kvwise-retrieval.gguf --steps 2000 --head-dim 32 --seqs 64
$py tools/train/train_gate.py --data-dir "$data" --model "$data/models/stories260K/stories260K.gguf" \
  --out models/stories260K.gate.gguf --mix text --steps 2000 --head-dim 32 --seqs 64
$py tools/train/plot_curve.py models/kvwise-retrieval.train.svg models/kvwise-retrieval.train.csv
