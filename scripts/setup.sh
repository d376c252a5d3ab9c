#!/usr/bin/env bash
# Installs everything kvwise needs from Debian 12 packages and builds it (Release, into build/).
# Usage: scripts/setup.sh [--sanitize | --tsan]
#   --sanitize: an ASan+UBSan build of the tests in build-asan/
#   --tsan:     a ThreadSanitizer build of the concurrent tests in build-tsan/
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential cmake pkg-config git
  libopenblas-dev libopenblas0-pthread libcli11-dev nlohmann-json3-dev libfmt-dev libpcre2-dev
  libsimdjson-dev libxxhash-dev libabsl-dev libgtest-dev libbenchmark-dev libcpp-httplib-dev libhiredis-dev python3 python3-numpy
  nodejs curl redis-server redis-tools)
# nodejs: the OpenAI Node client's integration test (tests/node); curl: the README's examples;
# redis-server/redis-tools: the shared prefix tier's tests start their own servers and clusters
scripts/apt-install.sh "${packages[@]}"

jobs=${KVWISE_JOBS:-2}
case "${1:-}" in
  --sanitize)
    cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKVWISE_SANITIZE=ON >/dev/null
    cmake --build build-asan -j "$jobs"
    ;;
  --tsan)
    cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKVWISE_TSAN=ON >/dev/null
    cmake --build build-tsan -j "$jobs"
    ;;
  *)
    cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build build -j "$jobs"
    ;;
esac
