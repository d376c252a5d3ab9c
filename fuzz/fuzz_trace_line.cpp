// libFuzzer target: the trace readers (Mooncake / Bailian JSONL, Azure CSV). The input is written to a
// file in the fuzzer's own temporary directory and read in each format; bad lines must be skipped or
// raise kvwise::Error, and every request read must be consistent (no more blocks than its length allows).
#include <cstddef>
#include <cstdint>
#include <string>

#include "base/error.h"
#include "fuzz_support.h"
#include "sim/trace.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = kvwise::fuzz::write_input(data, size, "trace");
  for (const char* format : {"mooncake", "bailian", "azure"}) {
    for (auto mode : {kvwise::sim::OnBadLine::Skip, kvwise::sim::OnBadLine::Fail}) {
      try {
        const kvwise::sim::Trace t = kvwise::sim::read_trace(path, format, mode);
        for (const auto& r : t.requests) {
          const uint64_t most = (uint64_t{r.input_tokens} + static_cast<uint64_t>(t.block_tokens) - 1) /
                                static_cast<uint64_t>(t.block_tokens);
          if (r.blocks.size() > most || !(r.time >= 0)) __builtin_trap();
        }
      } catch (const kvwise::Error&) {
      }
    }
  }
  return 0;
}
