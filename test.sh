#!/usr/bin/env bash
# Quick start, part 2: set up, build, and run the whole test suite.
#   ./test.sh              Release build, all tests
#   ./test.sh --sanitize   the same tests built with AddressSanitizer + UndefinedBehaviorSanitizer
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh "$@"
dir=build
[ "${1:-}" = "--sanitize" ] && dir=build-asan
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
ctest --test-dir "$dir" -j "${KVWISE_JOBS:-2}" --output-on-failure --timeout 900
