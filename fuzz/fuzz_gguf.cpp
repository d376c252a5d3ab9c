// libFuzzer target: the GGUF reader (header, metadata of every type, tensor infos and bounds). The
// input is written to a file in the fuzzer's own temporary directory; opening it must succeed or raise
// kvwise::Error, and an opened file's tensors must lie inside it.
#include <cstddef>
#include <cstdint>
#include <string>

#include "base/error.h"
#include "fuzz_support.h"
#include "model/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = kvwise::fuzz::write_input(data, size, "model.gguf");
  try {
    auto f = kvwise::GgufFile::open(path);
    volatile uint64_t sum = 0;
    for (const auto& t : f->tensors()) {
      const uint8_t* p = f->tensor_data(t);
      if (t.bytes > 0) sum = sum + p[0] + p[t.bytes - 1];  // ASan catches a tensor outside the file
    }
    for (const auto& [k, v] : f->metadata()) (void)v.to_display();
    (void)f->fingerprint();
  } catch (const kvwise::Error&) {
  }
  return 0;
}
