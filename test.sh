#!/usr/bin/env bash
# Quick start, part 2: set up, build, and run the whole test suite.
#   ./test.sh              Release build, all tests
#   ./test.sh --sanitize   the same tests built with AddressSanitizer + UndefinedBehaviorSanitizer
#   ./test.sh --tsan       the concurrent tests (pool, scheduler, server, prefix cache, prefetch) under ThreadSanitizer
#   ./test.sh --fuzz [S]   the libFuzzer targets, S seconds each (default 30)
# Extra arguments after the mode go to ctest (e.g. -L unit, -L server, -R Sim).
set -euo pipefail
cd "$(dirname "$0")"
mode=${1:-}
if [ "$mode" = "--fuzz" ]; then
  scripts/setup.sh
  exec scripts/fuzz.sh "${2:-30}"
fi
scripts/setup.sh "$mode"
dir=build
case "$mode" in
  --sanitize) dir=build-asan ;;
  --tsan) dir=build-tsan ;;
esac
[ $# -gt 0 ] && [[ "$mode" == --* ]] && shift
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tests/tsan.supp}
# OpenBLAS's own threads are not instrumented: under TSan the engine's pool does all the work.
[ "$mode" = "--tsan" ] && export OPENBLAS_NUM_THREADS=1
ctest --test-dir "$dir" -j "${KVWISE_JOBS:-2}" --output-on-failure --timeout 900 "$@"
