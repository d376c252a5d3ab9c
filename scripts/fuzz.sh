#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) and runs each for a bounded time on its seed corpus.
#   scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 30; CI runs it)
# Inputs and crash files stay inside a temporary directory of the run; a crash fails the script and is
# copied to build-fuzz/crashes/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
scripts/apt-install.sh clang libclang-rt-14-dev pkg-config libfmt-dev libsimdjson-dev libxxhash-dev nlohmann-json3-dev
out=build-fuzz
mkdir -p "$out"
flags=(-std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Isrc)
common=(src/base/error.cpp)
declare -A sources=(
  [policy_spec]="src/compress/policy_spec.cpp"
  [trace_line]="src/sim/trace.cpp"
  [gguf]="src/model/gguf.cpp src/tensor/dtype.cpp"
  [request]="src/serve/request_fields.cpp"
)
declare -A libs=(
  [policy_spec]="-lfmt"
  [trace_line]="-lfmt $(pkg-config --libs simdjson)"
  [gguf]="-lfmt -lxxhash"
  [request]="-lfmt"
)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
for t in policy_spec trace_line gguf request; do
  bin="$out/fuzz_$t"
  if [ ! -x "$bin" ] || [ -n "$(find fuzz/fuzz_$t.cpp ${sources[$t]} src -newer "$bin" -name '*.[ch]*' -print -quit)" ]; then
    # shellcheck disable=SC2086
    clang++ "${flags[@]}" "fuzz/fuzz_$t.cpp" ${sources[$t]} "${common[@]}" ${libs[$t]} -o "$bin"
  fi
  mkdir -p "$work/$t"
  cp -r "fuzz/corpus/$t/." "$work/$t/"
  if [ "$t" = gguf ]; then  # real files as seeds: a whole gate GGUF and the bundled model's first 16 KiB
    cp models/stories260K.gate.gguf "$work/gguf/gate.gguf"
    head -c 16384 models/kvwise-retrieval.gguf > "$work/gguf/model-head.gguf"
  fi
  echo "fuzz_$t: ${seconds}s"
  if ! (cd "$work" && TMPDIR="$work" "$OLDPWD/$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -max_len=65536 "$t" > "$work/$t.log" 2>&1); then
    echo "fuzz_$t FAILED:"; tail -n 40 "$work/$t.log"
    mkdir -p "$out/crashes"; cp "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$out/crashes/" 2>/dev/null || true
    status=1
  else
    grep -E "Done [0-9]+ runs" "$work/$t.log" || true
  fi
done
exit $status
