#!/usr/bin/env bash
# Builds a Debian sid chroot with llama.cpp's tools (llama-bench, llama-cli, llama-server) for
# side-by-side benchmarks. Uses the same Debian mirror apt is configured with. Benchmarks only:
# nothing in the build or the tests needs it.
set -euo pipefail
root=${1:-/opt/kvwise-sid}
mirror=$(grep -h -m1 -oE '^URIs: *[^ ]+' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | head -n1)
[ -n "$mirror" ] || mirror=$(grep -h -m1 -oE '^deb +[^ ]+' /etc/apt/sources.list | awk '{print $2}')
if [ ! -x "$root/usr/bin/llama-bench" ]; then
  command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap
  [ -d "$root/usr" ] || debootstrap --variant=minbase sid "$root" "$mirror"
  chroot "$root" apt-get -o Acquire::Check-Valid-Until=false update -qq
  chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq llama.cpp-tools
fi
ls "$root"/usr/bin/llama-* | head
