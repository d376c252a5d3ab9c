#!/usr/bin/env bash
# Reproduces models/kvwise-retrieval-v2.gguf: the bundled v1 fine-tuned for 400 steps on v1's task mix
# with 30 % of the RULER-style tasks v1 never saw (multi-value retrieval, common-words and
# frequent-words extraction; tools/train/tasks.py V2_KINDS, the templates of src/eval/ruler.cpp).
# About 22 minutes on 2 cores (shared with a compile; less alone). models/README.md is the model card.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/apt-install.sh python3 python3-numpy python3-torch libopenblas0-pthread
data=${KVWISE_DATA:-../shared}
set -x
/usr/bin/python3 tools/train/train.py --data-dir "$data" --init models/kvwise-retrieval.gguf \
  --out models/kvwise-retrieval-v2.gguf --name kvwise-retrieval-0.9m-v2 \
  --phases 512:300:v2,1024:100:v2 --lr 3e-4 --warmup 20 --eval-every 50
