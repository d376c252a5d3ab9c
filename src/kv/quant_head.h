// One KV head held at low precision, KIVI-style (kv-algorithms.md §1.7): keys quantised per channel
// over groups of `group` tokens, values per token over groups of `group` channels, and the newest
// tokens in a full-precision residual until a whole key group can be formed. Attention reads the
// codes directly (scores from per-channel scale/zero folded into the query, values accumulated
// group by group), so no dequantised copy of the head is ever built. This is the store that
// SpeCache's low-bit copy and MiKV's demoted tokens need (issue 5); it is not yet wired into
// KvStore or the forward pass.
#pragma once
#include <cstdint>
#include <vector>

#include "kv/kv_quant.h"

namespace kvwise {

struct QuantHeadLayout {
  int head_dim = 64;
  int key_bits = 2, value_bits = 2;  // 1, 2, 4 or 8
  int group = 32;                    // tokens per key group; channels per value group (divides head_dim)
  int residual = 32;                 // full-precision tokens kept (>= group); the oldest group is quantised when full
};

class QuantizedHead {
 public:
  explicit QuantizedHead(const QuantHeadLayout& layout);

  void append(const float* k, const float* v, int32_t pos);
  int size() const { return quantized_ + static_cast<int>(res_pos_.size()); }
  int quantized() const { return quantized_; }  // tokens in quantised groups (the oldest ones)
  int32_t position(int slot) const;
  // The key and value slot i stands for (dequantised, or the residual's exact rows).
  void read(int slot, float* k, float* v) const;

  // out[0..d) = softmax(scale * q.K^T) V over every slot. probs (optional) receives the n probabilities.
  void attend(const float* q, float scale, float* out, std::vector<float>* probs = nullptr) const;

  size_t bytes() const;             // codes + F16 scale/zero + residual (F16 accounting)
  double bits_per_element() const;  // bytes() * 8 / (2 * size() * head_dim)

 private:
  void flush_group();  // quantises the oldest `group` residual tokens

  QuantHeadLayout L_;
  size_t key_codes_per_channel_, value_codes_per_group_;
  // Key groups: per group, per channel: params + codes of `group` tokens.
  std::vector<QuantParams> key_params_;
  std::vector<uint8_t> key_codes_;
  // Values: per token, per channel group: params + codes.
  std::vector<QuantParams> value_params_;
  std::vector<uint8_t> value_codes_;
  std::vector<int32_t> quant_pos_;
  int quantized_ = 0;
  std::vector<float> res_k_, res_v_;  // residual rows, oldest first
  std::vector<int32_t> res_pos_;
};

}  // namespace kvwise
