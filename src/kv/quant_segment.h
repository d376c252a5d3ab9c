// A low-precision segment of one KV head (kv-algorithms.md §1.7): tokens moved out of the head's
// full-precision pages (MiKV's demoted tokens, the uniform kv-int8/kv-int4 cache beyond its recent
// residual, SpeCache's low-bit copy). Keys are quantised per token (groups of `group` channels) or
// per channel (KIVI: groups of `group` consecutive tokens of one channel; the newest tokens that
// do not fill a group yet stay as exact F16 rows); values per token. F16 and BF16 segments store the
// rows as they are. Attention reads the codes directly through the kernels of tensor/kernels.h.
//
// An optional per-channel balancer b (MiKV) is applied on the way in: keys are stored as k * b and
// queries used as q / b, so q'.k' = q.k before quantisation.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kvwise {

enum class KvPrecision : uint8_t { F16, BF16, Int8, Int4, Int2, Int1 };
int precision_bits(KvPrecision p);  // 16, 16, 8, 4, 2, 1
const char* precision_name(KvPrecision p);
// "f16", "bf16", "int8", "int4", "int2", "int1" (also "16", "8", "4", "2", "1"); throws on anything else.
KvPrecision parse_precision(std::string_view s);

struct QuantFormat {
  KvPrecision key = KvPrecision::Int4, value = KvPrecision::Int4;
  bool key_per_channel = false;
  // Tokens per group of per-channel keys; channels per group of per-token keys and values, capped at
  // head_dim (a model with 8-channel heads quantises per-token groups of 8).
  int group = 32;

  bool operator==(const QuantFormat&) const = default;
  // Throws a clear error when the format does not fit the head (group must divide head_dim and be a
  // multiple of 8; per-channel keys need an integer key precision).
  void validate(int head_dim) const;
  std::string to_string() const;  // e.g. "k=int2/channel,v=int2,g=32"
};

class QuantSegment {
 public:
  QuantSegment(const QuantFormat& format, int head_dim, std::vector<float> balancer = {});

  const QuantFormat& format() const { return f_; }
  int head_dim() const { return hd_; }
  int size() const { return static_cast<int>(pos_.size()); }
  int32_t position(int slot) const { return pos_[static_cast<size_t>(slot)]; }
  const std::vector<int32_t>& positions() const { return pos_; }
  // The largest position held (INT32_MIN when empty): attention skips causal masking below it.
  int32_t max_position() const { return max_pos_; }
  const std::vector<float>& balancer() const { return balance_; }

  // Appends one token (k, v: head_dim floats, unbalanced).
  void append(const float* k, const float* v, int32_t pos);
  // The key and value slot i stands for, dequantised and unbalanced (either may be null).
  void read(int slot, float* k, float* v) const;

  // S[q * ss + (j - s0)] = scale * q.k_j for slots j in [s0, s1) and nq query rows of head_dim floats
  // (unbalanced: the balancer is applied here).
  void scores(const float* Q, int nq, float scale, int s0, int s1, float* S, int ss) const;
  // out[q * head_dim + c] += sum_{j in [s0, s1)} P[q * ps + (j - s0)] * v_j[c].
  void accumulate(const float* P, int nq, int ps, int s0, int s1, float* out) const;

  size_t bytes() const;  // everything held: codes, F16 scales/zeros, exact rows, positions (as pages count theirs)
  double bits_per_element() const;  // bytes() * 8 / (2 * size() * head_dim)

 private:
  void flush_key_group();
  size_t key_row_bytes() const;  // per-token keys: code bytes of one row
  size_t value_row_bytes() const;

  QuantFormat f_;
  int hd_;
  int tg_;  // channels per per-token group
  std::vector<float> balance_;
  std::vector<int32_t> pos_;
  int32_t max_pos_ = INT32_MIN;
  // Keys. Per token: codes (or raw 16-bit rows) + params per token. Per channel: whole groups of
  // `group` tokens (per channel: codes of the group's tokens, params), then exact F16 pending rows.
  std::vector<uint8_t> key_codes_;
  std::vector<uint16_t> key_params_;
  std::vector<uint16_t> pending_k_;
  int key_groups_ = 0;
  // Values, per token.
  std::vector<uint8_t> value_codes_;
  std::vector<uint16_t> value_params_;
};

}  // namespace kvwise
