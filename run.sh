#!/usr/bin/env bash
# Quick start, part 1: set up, build, and generate text with the default model.
# Extra arguments go to `kvwise generate` (e.g. -p "Once upon a time" -n 100 --temp 0).
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh >&2
exec build/apps/kvwise/kvwise generate "$@"
