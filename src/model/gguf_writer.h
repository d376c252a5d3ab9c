// Writes GGUF v3 files: metadata in insertion order, tensors aligned to general.alignment (32).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/gguf.h"

namespace kvwise {

class GgufWriter {
 public:
  void set(const std::string& key, GgufValue value);
  // dims in ggml order (dims[0] contiguous); data must hold the exact byte size for the type.
  void add_tensor(const std::string& name, std::vector<int64_t> dims, DType type, std::vector<uint8_t> data);
  void write(const std::string& path) const;  // throws kvwise::Error on I/O failure

 private:
  struct Tensor {
    std::string name;
    std::vector<int64_t> dims;
    DType type;
    std::vector<uint8_t> data;
  };
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::vector<Tensor> tensors_;
};

// Copies every metadata entry of a file except those in `skip` (used by quantize and converters).
void copy_metadata(const GgufFile& from, GgufWriter& to, const std::vector<std::string>& skip = {});

}  // namespace kvwise
