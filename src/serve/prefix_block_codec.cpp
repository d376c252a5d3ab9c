#include "serve/prefix_block_codec.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "base/error.h"
#include "kv/kv_quant.h"
#include "tensor/fp16.h"
#include "tensor/kernels.h"

namespace kvwise {

PrefixBlockCodec::PrefixBlockCodec(DType store_type, int head_dim, const std::string& dtype, int group)
    : type_(store_type), head_dim_(head_dim), dtype_(dtype) {
  KV_CHECK(type_ == DType::F16 || type_ == DType::F32, "the prefix cache stores f16 or f32 KV rows");
  KV_CHECK(head_dim_ > 0, "head_dim must be positive");
  store_row_ = static_cast<size_t>(head_dim_) * (type_ == DType::F16 ? 2 : 4);
  if (dtype == "f16") {
    stored_row_ = store_row_;
    return;
  }
  KV_CHECK(dtype == "int8" || dtype == "int4", "--prefix-cache-dtype {}: expected f16, int8 or int4", dtype);
  bits_ = dtype == "int8" ? 8 : 4;
  group_ = std::min(group, head_dim_);
  KV_CHECK(group_ > 0 && group_ % 8 == 0 && head_dim_ % group_ == 0,
           "--prefix-cache-group {}: must be a multiple of 8 that divides the head size {}", group, head_dim_);
  codes_ = packed_bytes(group_, bits_);
  stored_row_ = static_cast<size_t>(head_dim_ / group_) * (codes_ + 4);
}

uint32_t PrefixBlockCodec::tag() const {
  return static_cast<uint32_t>(type_) | static_cast<uint32_t>(bits_) << 8 | static_cast<uint32_t>(group_) << 16;
}

double PrefixBlockCodec::f16_ratio(const std::string& dtype, int group) {
  // The ratio does not depend on the head size once the group divides it; 128 is divided by every group.
  const PrefixBlockCodec c(DType::F16, 128, dtype, group);
  return static_cast<double>(c.stored_row_bytes()) / static_cast<double>(c.store_row_bytes());
}

void PrefixBlockCodec::encode(const uint8_t* rows, int n, uint8_t* out) const {
  if (raw()) {
    std::memcpy(out, rows, static_cast<size_t>(n) * store_row_);
    return;
  }
  std::vector<float> x(static_cast<size_t>(head_dim_));
  const int groups = head_dim_ / group_;
  for (int r = 0; r < n; ++r) {
    const uint8_t* src = rows + static_cast<size_t>(r) * store_row_;
    if (type_ == DType::F16) {
      kernels().f16_to_f32(reinterpret_cast<const uint16_t*>(src), x.data(), head_dim_);
    } else {
      std::memcpy(x.data(), src, store_row_);
    }
    uint8_t* dst = out + static_cast<size_t>(r) * stored_row_;
    uint8_t* params = dst + static_cast<size_t>(groups) * codes_;
    for (int g = 0; g < groups; ++g) {
      const QuantParams p = quantize_group(x.data() + g * group_, group_, bits_, dst + static_cast<size_t>(g) * codes_);
      const uint16_t sz[2] = {fp32_to_fp16(p.scale), fp32_to_fp16(p.zero)};  // already f16 values: exact
      std::memcpy(params + 4 * g, sz, 4);
    }
  }
}

void PrefixBlockCodec::decode(const uint8_t* in, int n, uint8_t* rows) const {
  if (raw()) {
    std::memcpy(rows, in, static_cast<size_t>(n) * store_row_);
    return;
  }
  std::vector<float> x(static_cast<size_t>(head_dim_));
  const int groups = head_dim_ / group_;
  for (int r = 0; r < n; ++r) {
    const uint8_t* src = in + static_cast<size_t>(r) * stored_row_;
    const uint8_t* params = src + static_cast<size_t>(groups) * codes_;
    for (int g = 0; g < groups; ++g) {
      uint16_t sz[2];
      std::memcpy(sz, params + 4 * g, 4);
      const QuantParams p{fp16_to_fp32(sz[0]), fp16_to_fp32(sz[1])};
      dequantize_group(src + static_cast<size_t>(g) * codes_, group_, bits_, p, x.data() + g * group_);
    }
    uint8_t* dst = rows + static_cast<size_t>(r) * store_row_;
    if (type_ == DType::F16) {
      for (int i = 0; i < head_dim_; ++i) {
        const uint16_t h = fp32_to_fp16(x[static_cast<size_t>(i)]);
        std::memcpy(dst + 2 * i, &h, 2);
      }
    } else {
      std::memcpy(dst, x.data(), store_row_);
    }
  }
}

}  // namespace kvwise
