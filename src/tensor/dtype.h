// Element and block types of weights and KV, numbered as in GGUF/ggml so files map directly.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace kvwise {

enum class DType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ4_NL = 20,
  IQ4_XS = 23,
  BF16 = 30,
};

struct DTypeInfo {
  const char* name;
  int block_elems;  // elements per block
  int block_bytes;  // bytes per block
  bool compute;     // kvwise can dequantize and multiply it
};

// nullptr when the id is not a type kvwise knows the layout of.
const DTypeInfo* dtype_info(uint32_t id);
const DTypeInfo& dtype_info(DType t);
const char* dtype_name(DType t);
// Parses "f32", "q8_0", ... (case-insensitive); throws kvwise::Error for unknown names.
DType parse_dtype(const std::string& name);
// Bytes of a row of n elements; throws if n is not a multiple of the block size.
size_t row_bytes(DType t, int64_t n);

}  // namespace kvwise
