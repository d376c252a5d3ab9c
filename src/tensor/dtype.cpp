#include "tensor/dtype.h"

#include <algorithm>
#include <array>
#include <cctype>

#include "base/error.h"

namespace kvwise {

namespace {
struct Entry {
  uint32_t id;
  DTypeInfo info;
};
constexpr std::array<Entry, 15> kTypes = {{
    {0, {"F32", 1, 4, true}},
    {1, {"F16", 1, 2, true}},
    {2, {"Q4_0", 32, 18, true}},
    {3, {"Q4_1", 32, 20, false}},
    {6, {"Q5_0", 32, 22, false}},
    {7, {"Q5_1", 32, 24, false}},
    {8, {"Q8_0", 32, 34, true}},
    {9, {"Q8_1", 32, 36, false}},
    {10, {"Q2_K", 256, 84, false}},
    {11, {"Q3_K", 256, 110, false}},
    {12, {"Q4_K", 256, 144, true}},
    {13, {"Q5_K", 256, 176, true}},
    {14, {"Q6_K", 256, 210, true}},
    {15, {"Q8_K", 256, 292, false}},
    {30, {"BF16", 1, 2, true}},
}};
}  // namespace

const DTypeInfo* dtype_info(uint32_t id) {
  for (const auto& e : kTypes)
    if (e.id == id) return &e.info;
  return nullptr;
}

const DTypeInfo& dtype_info(DType t) {
  const DTypeInfo* info = dtype_info(static_cast<uint32_t>(t));
  KV_CHECK(info != nullptr, "unknown tensor type id {}", static_cast<uint32_t>(t));
  return *info;
}

const char* dtype_name(DType t) {
  return dtype_info(t).name;
}

DType parse_dtype(const std::string& name) {
  std::string upper = name;
  std::transform(upper.begin(), upper.end(), upper.begin(), [](unsigned char c) { return std::toupper(c); });
  for (const auto& e : kTypes)
    if (upper == e.info.name) return static_cast<DType>(e.id);
  fail("unknown type '{}' (expected one of f32, f16, bf16, q8_0, q4_0, q4_k, q6_k)", name);
}

size_t row_bytes(DType t, int64_t n) {
  const DTypeInfo& info = dtype_info(t);
  KV_CHECK(n >= 0 && n % info.block_elems == 0, "row of {} elements is not a multiple of the {} block size {}", n,
           info.name, info.block_elems);
  return static_cast<size_t>(n / info.block_elems) * static_cast<size_t>(info.block_bytes);
}

}  // namespace kvwise
