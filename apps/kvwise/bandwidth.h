// This machine's memory bandwidth, measured the way a decode step reads weights: threads each stream
// their slice of a buffer far larger than the caches. The reference that `kvwise bench` puts next to
// decode's effective weight bandwidth (weight bytes per token x tokens/s).
#pragma once
#include <cstddef>

namespace kvwise::cli {

struct Bandwidth {
  double read_gbps = 0;  // bytes read per second (best of the rounds), GB = 1e9 bytes
  double copy_gbps = 0;  // memcpy: bytes read + bytes written per second
};

// Streams `bytes` (default 512 MiB) with `threads` threads, best of `rounds`. Not thread-safe with
// other timing: run it alone.
Bandwidth measure_bandwidth(int threads, size_t bytes = size_t{512} << 20, int rounds = 3);

}  // namespace kvwise::cli
