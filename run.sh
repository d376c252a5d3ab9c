#!/usr/bin/env bash
# Quick start, part 1: set up (apt packages), build, and show what kvwise does: `kvwise demo` on the
# bundled model and a trace (a table here, an HTML report in kvwise-demo/).
#   ./run.sh                 the demo
#   ./run.sh --budget 50%    the demo with its options (kvwise demo --help)
#   ./run.sh generate -p "Once upon a time" -n 64     any kvwise subcommand
# The build's output goes to build/setup.log; it is shown only when the build fails.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p build
log=build/setup.log
echo "kvwise: setting up and building (log: $log) ..." >&2
if ! scripts/setup.sh >"$log" 2>&1; then
  tail -n 60 "$log" >&2
  echo "kvwise: setup or build failed; the whole log is $log" >&2
  exit 1
fi
kvwise=build/apps/kvwise/kvwise
if [ $# -eq 0 ] || [[ "$1" == -* ]]; then
  exec "$kvwise" demo "$@"
fi
exec "$kvwise" "$@"
