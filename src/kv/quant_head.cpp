#include "kv/quant_head.h"

#include <algorithm>
#include <cmath>

#include "base/error.h"

namespace kvwise {

QuantizedHead::QuantizedHead(const QuantHeadLayout& layout) : L_(layout) {
  KV_CHECK(L_.head_dim > 0 && L_.group > 0 && L_.head_dim % L_.group == 0,
           "the value group ({} channels) must divide the head dimension ({})", L_.group, L_.head_dim);
  KV_CHECK(L_.residual >= L_.group, "the residual ({} tokens) must hold at least one key group ({})", L_.residual,
           L_.group);
  key_codes_per_channel_ = packed_bytes(L_.group, L_.key_bits);  // validates bits
  value_codes_per_group_ = packed_bytes(L_.group, L_.value_bits);
}

int32_t QuantizedHead::position(int slot) const {
  KV_CHECK(slot >= 0 && slot < size(), "slot {} out of range ({} tokens)", slot, size());
  return slot < quantized_ ? quant_pos_[static_cast<size_t>(slot)] : res_pos_[static_cast<size_t>(slot - quantized_)];
}

void QuantizedHead::append(const float* k, const float* v, int32_t pos) {
  const size_t d = static_cast<size_t>(L_.head_dim);
  res_k_.insert(res_k_.end(), k, k + d);
  res_v_.insert(res_v_.end(), v, v + d);
  res_pos_.push_back(pos);
  while (static_cast<int>(res_pos_.size()) > L_.residual) flush_group();
}

void QuantizedHead::flush_group() {
  const int g = L_.group, d = L_.head_dim;
  // Keys: one group per channel, across the g oldest residual tokens.
  std::vector<float> column(static_cast<size_t>(g));
  const size_t kc0 = key_codes_.size();
  key_codes_.resize(kc0 + static_cast<size_t>(d) * key_codes_per_channel_);
  for (int c = 0; c < d; ++c) {
    for (int t = 0; t < g; ++t) column[static_cast<size_t>(t)] = res_k_[static_cast<size_t>(t * d + c)];
    key_params_.push_back(quantize_group(column.data(), g, L_.key_bits,
                                         key_codes_.data() + kc0 + static_cast<size_t>(c) * key_codes_per_channel_));
  }
  // Values: per token, groups of g channels.
  const int vg = d / g;
  for (int t = 0; t < g; ++t)
    for (int j = 0; j < vg; ++j) {
      const size_t vc0 = value_codes_.size();
      value_codes_.resize(vc0 + value_codes_per_group_);
      value_params_.push_back(
          quantize_group(&res_v_[static_cast<size_t>(t * d + j * g)], g, L_.value_bits, value_codes_.data() + vc0));
    }
  quant_pos_.insert(quant_pos_.end(), res_pos_.begin(), res_pos_.begin() + g);
  res_pos_.erase(res_pos_.begin(), res_pos_.begin() + g);
  res_k_.erase(res_k_.begin(), res_k_.begin() + static_cast<long>(g) * d);
  res_v_.erase(res_v_.begin(), res_v_.begin() + static_cast<long>(g) * d);
  quantized_ += g;
}

void QuantizedHead::read(int slot, float* k, float* v) const {
  KV_CHECK(slot >= 0 && slot < size(), "slot {} out of range ({} tokens)", slot, size());
  const int g = L_.group, d = L_.head_dim;
  if (slot >= quantized_) {
    const size_t r = static_cast<size_t>(slot - quantized_) * static_cast<size_t>(d);
    std::copy(res_k_.begin() + static_cast<long>(r), res_k_.begin() + static_cast<long>(r) + d, k);
    std::copy(res_v_.begin() + static_cast<long>(r), res_v_.begin() + static_cast<long>(r) + d, v);
    return;
  }
  const int grp = slot / g, t = slot % g;
  std::vector<float> column(static_cast<size_t>(g));
  for (int c = 0; c < d; ++c) {
    const size_t i = static_cast<size_t>(grp * d + c);
    dequantize_group(key_codes_.data() + i * key_codes_per_channel_, g, L_.key_bits, key_params_[i], column.data());
    k[c] = column[static_cast<size_t>(t)];
  }
  const int vg = d / g;
  for (int j = 0; j < vg; ++j) {
    const size_t i = static_cast<size_t>(slot * vg + j);
    dequantize_group(value_codes_.data() + i * value_codes_per_group_, g, L_.value_bits, value_params_[i], v + j * g);
  }
}

void QuantizedHead::attend(const float* q, float scale, float* out, std::vector<float>* probs) const {
  const int g = L_.group, d = L_.head_dim, n = size();
  std::vector<float> s(static_cast<size_t>(n), 0.0f);
  std::vector<uint8_t> codes(static_cast<size_t>(g));
  // Quantised keys: score[t] = sum_c q_c (zero_c + scale_c * level(code_ct)), with the per-channel
  // constants folded into the query once per group.
  for (int grp = 0; grp < quantized_ / g; ++grp) {
    float base = 0;
    float* st = s.data() + static_cast<size_t>(grp * g);
    for (int c = 0; c < d; ++c) {
      const size_t i = static_cast<size_t>(grp * d + c);
      const QuantParams& p = key_params_[i];
      float a;
      if (L_.key_bits == 1) {  // levels zero + scale * (0.25 + 0.5 code)
        base += q[c] * (p.zero + 0.25f * p.scale);
        a = q[c] * 0.5f * p.scale;
      } else {
        base += q[c] * p.zero;
        a = q[c] * p.scale;
      }
      unpack_codes(key_codes_.data() + i * key_codes_per_channel_, g, L_.key_bits, codes.data());
      for (int t = 0; t < g; ++t) st[t] += a * static_cast<float>(codes[static_cast<size_t>(t)]);
    }
    for (int t = 0; t < g; ++t) st[t] += base;
  }
  for (int r = 0; r < n - quantized_; ++r) {
    const float* k = &res_k_[static_cast<size_t>(r * d)];
    float dot = 0;
    for (int c = 0; c < d; ++c) dot += q[c] * k[c];
    s[static_cast<size_t>(quantized_ + r)] = dot;
  }
  float mx = -INFINITY;
  for (float& x : s) mx = std::max(mx, x *= scale);
  float sum = 0;
  for (float& x : s) sum += (x = std::exp(x - mx));
  for (float& x : s) x /= sum;
  std::fill(out, out + d, 0.0f);
  const int vg = d / g;
  for (int t = 0; t < quantized_; ++t)
    for (int j = 0; j < vg; ++j) {
      const size_t i = static_cast<size_t>(t * vg + j);
      axpy_quantized(s[static_cast<size_t>(t)], value_codes_.data() + i * value_codes_per_group_, g, L_.value_bits,
                     value_params_[i], out + j * g);
    }
  for (int r = 0; r < n - quantized_; ++r) {
    const float p = s[static_cast<size_t>(quantized_ + r)];
    const float* v = &res_v_[static_cast<size_t>(r * d)];
    for (int c = 0; c < d; ++c) out[c] += p * v[c];
  }
  if (probs) *probs = std::move(s);
}

size_t QuantizedHead::bytes() const {
  // Scale and zero are F16 each; the residual is kept as floats.
  return key_codes_.size() + value_codes_.size() + 4 * (key_params_.size() + value_params_.size()) +
         sizeof(float) * (res_k_.size() + res_v_.size());
}

double QuantizedHead::bits_per_element() const {
  return size() ? 8.0 * static_cast<double>(bytes()) / (2.0 * size() * L_.head_dim) : 0;
}

}  // namespace kvwise
