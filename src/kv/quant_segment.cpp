#include "kv/quant_segment.h"

#include <algorithm>
#include <cmath>

#include "base/error.h"
#include "kv/kv_quant.h"
#include "tensor/fp16.h"
#include "tensor/kernels.h"

namespace kvwise {

namespace {
bool is_int(KvPrecision p) {
  return p != KvPrecision::F16 && p != KvPrecision::BF16;
}
// BF16 rows are widened to F32 this many at a time (32 KiB per thread at head_dim 128).
constexpr int kBf16Block = 64;
float* bf16_block(int head_dim) {
  thread_local std::vector<float> buf;
  buf.resize(static_cast<size_t>(kBf16Block) * static_cast<size_t>(head_dim));
  return buf.data();
}
uint16_t to_bits16(KvPrecision p, float x) {
  return p == KvPrecision::BF16 ? fp32_to_bf16(x) : fp32_to_fp16(x);
}
float from_bits16(KvPrecision p, uint16_t h) {
  return p == KvPrecision::BF16 ? bf16_to_fp32(h) : fp16_to_fp32(h);
}
void put_params(const QuantParams& q, uint16_t* out) {
  out[0] = fp32_to_fp16(q.scale);
  out[1] = fp32_to_fp16(q.zero);
}
QuantParams get_params(const uint16_t* in) {
  return {fp16_to_fp32(in[0]), fp16_to_fp32(in[1])};
}
}  // namespace

int precision_bits(KvPrecision p) {
  switch (p) {
    case KvPrecision::F16:
    case KvPrecision::BF16:
      return 16;
    case KvPrecision::Int8:
      return 8;
    case KvPrecision::Int4:
      return 4;
    case KvPrecision::Int2:
      return 2;
    case KvPrecision::Int1:
      return 1;
  }
  return 16;
}

const char* precision_name(KvPrecision p) {
  switch (p) {
    case KvPrecision::F16:
      return "f16";
    case KvPrecision::BF16:
      return "bf16";
    case KvPrecision::Int8:
      return "int8";
    case KvPrecision::Int4:
      return "int4";
    case KvPrecision::Int2:
      return "int2";
    case KvPrecision::Int1:
      return "int1";
  }
  return "?";
}

KvPrecision parse_precision(std::string_view s) {
  if (s == "f16" || s == "16") return KvPrecision::F16;
  if (s == "bf16") return KvPrecision::BF16;
  if (s == "int8" || s == "8") return KvPrecision::Int8;
  if (s == "int4" || s == "4") return KvPrecision::Int4;
  if (s == "int2" || s == "2") return KvPrecision::Int2;
  if (s == "int1" || s == "1") return KvPrecision::Int1;
  fail("unknown KV precision \"{}\" (f16, bf16, int8, int4, int2 or int1)", s);
}

void QuantFormat::validate(int head_dim) const {
  KV_CHECK(group >= 8 && group % 8 == 0, "KV quantisation group {} must be a positive multiple of 8", group);
  const int tg = std::min(group, head_dim);
  KV_CHECK(key_per_channel || head_dim % tg == 0, "per-token key groups of {} channels do not divide head_dim {}", tg,
           head_dim);
  KV_CHECK(head_dim % tg == 0 || !is_int(value), "per-token value groups of {} channels do not divide head_dim {}", tg,
           head_dim);
  KV_CHECK(!key_per_channel || is_int(key), "per-channel keys need an integer precision, not {}", precision_name(key));
  KV_CHECK(!key_per_channel || group <= 256, "per-channel key groups hold at most 256 tokens, not {}", group);
}

std::string QuantFormat::to_string() const {
  return fmt::format("k={}{},v={},g={}", precision_name(key), key_per_channel ? "/channel" : "", precision_name(value),
                     group);
}

QuantSegment::QuantSegment(const QuantFormat& format, int head_dim, std::vector<float> balancer)
    : f_(format), hd_(head_dim), tg_(std::min(format.group, head_dim)), balance_(std::move(balancer)) {
  f_.validate(hd_);
  KV_CHECK(balance_.empty() || static_cast<int>(balance_.size()) == hd_, "balancer of {} channels for head_dim {}",
           balance_.size(), hd_);
}

size_t QuantSegment::key_row_bytes() const {
  return static_cast<size_t>(hd_) * static_cast<size_t>(precision_bits(f_.key)) / 8;
}
size_t QuantSegment::value_row_bytes() const {
  return static_cast<size_t>(hd_) * static_cast<size_t>(precision_bits(f_.value)) / 8;
}

void QuantSegment::append(const float* k_in, const float* v, int32_t pos) {
  std::vector<float> k(k_in, k_in + hd_);
  if (!balance_.empty())
    for (int c = 0; c < hd_; ++c) k[static_cast<size_t>(c)] *= balance_[static_cast<size_t>(c)];
  const int groups = hd_ / tg_;
  // Keys.
  if (f_.key_per_channel) {
    for (float x : k) pending_k_.push_back(fp32_to_fp16(x));
    if (pending_k_.size() == static_cast<size_t>(f_.group * hd_)) flush_key_group();
  } else if (!is_int(f_.key)) {
    for (float x : k) {
      const uint16_t h = to_bits16(f_.key, x);
      key_codes_.push_back(static_cast<uint8_t>(h & 0xFF));
      key_codes_.push_back(static_cast<uint8_t>(h >> 8));
    }
  } else {
    const int bits = precision_bits(f_.key);
    const size_t gb = packed_bytes(tg_, bits), at = key_codes_.size();
    key_codes_.resize(at + key_row_bytes());
    for (int gi = 0; gi < groups; ++gi) {
      const QuantParams p = quantize_group(k.data() + gi * tg_, tg_, bits, key_codes_.data() + at + gi * gb);
      key_params_.resize(key_params_.size() + 2);
      put_params(p, key_params_.data() + key_params_.size() - 2);
    }
  }
  // Values.
  if (!is_int(f_.value)) {
    for (int c = 0; c < hd_; ++c) {
      const uint16_t h = to_bits16(f_.value, v[c]);
      value_codes_.push_back(static_cast<uint8_t>(h & 0xFF));
      value_codes_.push_back(static_cast<uint8_t>(h >> 8));
    }
  } else {
    const int bits = precision_bits(f_.value);
    const size_t gb = packed_bytes(tg_, bits), at = value_codes_.size();
    value_codes_.resize(at + value_row_bytes());
    for (int gi = 0; gi < groups; ++gi) {
      const QuantParams p = quantize_group(v + gi * tg_, tg_, bits, value_codes_.data() + at + gi * gb);
      value_params_.resize(value_params_.size() + 2);
      put_params(p, value_params_.data() + value_params_.size() - 2);
    }
  }
  pos_.push_back(pos);
  max_pos_ = std::max(max_pos_, pos);
}

void QuantSegment::flush_key_group() {
  const int g = f_.group, bits = precision_bits(f_.key);
  const size_t gb = packed_bytes(g, bits);
  std::vector<float> ch(static_cast<size_t>(g));
  const size_t at = key_codes_.size();
  key_codes_.resize(at + gb * static_cast<size_t>(hd_));
  for (int c = 0; c < hd_; ++c) {
    for (int t = 0; t < g; ++t) ch[static_cast<size_t>(t)] = fp16_to_fp32(pending_k_[static_cast<size_t>(t * hd_ + c)]);
    const QuantParams p = quantize_group(ch.data(), g, bits, key_codes_.data() + at + static_cast<size_t>(c) * gb);
    key_params_.resize(key_params_.size() + 2);
    put_params(p, key_params_.data() + key_params_.size() - 2);
  }
  pending_k_.clear();
  ++key_groups_;
}

void QuantSegment::read(int slot, float* k, float* v) const {
  KV_CHECK(slot >= 0 && slot < size(), "slot {} outside a segment of {}", slot, size());
  const size_t s = static_cast<size_t>(slot);
  const int groups = hd_ / tg_;
  if (k) {
    if (f_.key_per_channel) {
      const int g = f_.group, bits = precision_bits(f_.key);
      if (slot >= key_groups_ * g) {
        const size_t r = static_cast<size_t>(slot - key_groups_ * g) * static_cast<size_t>(hd_);
        for (int c = 0; c < hd_; ++c) k[c] = fp16_to_fp32(pending_k_[r + static_cast<size_t>(c)]);
      } else {
        const int grp = slot / g, t = slot % g;
        const size_t gb = packed_bytes(g, bits);
        std::vector<float> ch(static_cast<size_t>(g));
        for (int c = 0; c < hd_; ++c) {
          const size_t i = static_cast<size_t>(grp) * static_cast<size_t>(hd_) + static_cast<size_t>(c);
          dequantize_group(key_codes_.data() + i * gb, g, bits, get_params(key_params_.data() + 2 * i), ch.data());
          k[c] = ch[static_cast<size_t>(t)];
        }
      }
    } else if (!is_int(f_.key)) {
      const uint8_t* r = key_codes_.data() + s * key_row_bytes();
      for (int c = 0; c < hd_; ++c) k[c] = from_bits16(f_.key, static_cast<uint16_t>(r[2 * c] | (r[2 * c + 1] << 8)));
    } else {
      const int bits = precision_bits(f_.key);
      const size_t gb = packed_bytes(tg_, bits);
      for (int gi = 0; gi < groups; ++gi)
        dequantize_group(
            key_codes_.data() + s * key_row_bytes() + static_cast<size_t>(gi) * gb, tg_, bits,
            get_params(key_params_.data() + 2 * (s * static_cast<size_t>(groups) + static_cast<size_t>(gi))),
            k + gi * tg_);
    }
    if (!balance_.empty())
      for (int c = 0; c < hd_; ++c) k[c] /= balance_[static_cast<size_t>(c)];
  }
  if (v) {
    if (!is_int(f_.value)) {
      const uint8_t* r = value_codes_.data() + s * value_row_bytes();
      for (int c = 0; c < hd_; ++c) v[c] = from_bits16(f_.value, static_cast<uint16_t>(r[2 * c] | (r[2 * c + 1] << 8)));
    } else {
      const int bits = precision_bits(f_.value);
      const size_t gb = packed_bytes(tg_, bits);
      for (int gi = 0; gi < groups; ++gi)
        dequantize_group(
            value_codes_.data() + s * value_row_bytes() + static_cast<size_t>(gi) * gb, tg_, bits,
            get_params(value_params_.data() + 2 * (s * static_cast<size_t>(groups) + static_cast<size_t>(gi))),
            v + gi * tg_);
    }
  }
}

void QuantSegment::scores(const float* Q_in, int nq, float scale, int s0, int s1, float* S, int ss) const {
  if (s1 <= s0) return;
  const Kernels& K = kernels();
  std::vector<float> qb;
  const float* Q = Q_in;
  if (!balance_.empty()) {
    qb.assign(Q_in, Q_in + static_cast<size_t>(nq) * static_cast<size_t>(hd_));
    for (int q = 0; q < nq; ++q)
      for (int c = 0; c < hd_; ++c) qb[static_cast<size_t>(q * hd_ + c)] /= balance_[static_cast<size_t>(c)];
    Q = qb.data();
  }
  const int groups = hd_ / tg_;
  if (!f_.key_per_channel) {
    const uint8_t* rows = key_codes_.data() + static_cast<size_t>(s0) * key_row_bytes();
    if (f_.key == KvPrecision::F16) {
      K.kv_scores(true, rows, s1 - s0, hd_, Q, nq, scale, S, ss);
    } else if (f_.key == KvPrecision::BF16) {
      // Blocks of rows widened to F32 in L1 (never the whole segment), then the F32 kernel; the rows
      // are balanced, so the balanced query Q goes with them.
      float* tmp = bf16_block(hd_);
      for (int j = s0; j < s1; j += kBf16Block) {
        const int cnt = std::min(kBf16Block, s1 - j);
        K.bf16_to_f32(reinterpret_cast<const uint16_t*>(rows) + static_cast<size_t>(j - s0) * hd_, tmp,
                      static_cast<int64_t>(cnt) * hd_);
        K.kv_scores(false, tmp, cnt, hd_, Q, nq, scale, S + (j - s0), ss);
      }
    } else {
      K.qk_tokens(precision_bits(f_.key), rows, key_params_.data() + 2 * static_cast<size_t>(s0) * groups, s1 - s0, hd_,
                  tg_, Q, nq, scale, S, ss);
    }
    return;
  }
  // Per-channel keys: whole groups, then the exact pending rows.
  const int g = f_.group, bits = precision_bits(f_.key), quantized = key_groups_ * g;
  const size_t gb = packed_bytes(g, bits);
  std::vector<float> tmp;
  for (int grp = s0 / g; grp * g < std::min(s1, quantized); ++grp) {
    const int a = grp * g, b = a + g;
    const uint8_t* codes = key_codes_.data() + static_cast<size_t>(grp) * static_cast<size_t>(hd_) * gb;
    const uint16_t* params = key_params_.data() + 2 * static_cast<size_t>(grp) * static_cast<size_t>(hd_);
    if (a >= s0 && b <= s1) {
      K.qk_channels(bits, codes, params, g, hd_, Q, nq, scale, S + (a - s0), ss);
    } else {
      tmp.resize(static_cast<size_t>(nq * g));
      K.qk_channels(bits, codes, params, g, hd_, Q, nq, scale, tmp.data(), g);
      for (int q = 0; q < nq; ++q)
        for (int j = std::max(a, s0); j < std::min(b, s1); ++j)
          S[q * ss + (j - s0)] = tmp[static_cast<size_t>(q * g + (j - a))];
    }
  }
  const int p0 = std::max(s0, quantized);
  if (p0 < s1)
    K.kv_scores(true, pending_k_.data() + static_cast<size_t>(p0 - quantized) * static_cast<size_t>(hd_), s1 - p0, hd_,
                Q, nq, scale, S + (p0 - s0), ss);
}

void QuantSegment::accumulate(const float* P, int nq, int ps, int s0, int s1, float* out) const {
  if (s1 <= s0) return;
  const Kernels& K = kernels();
  const uint8_t* rows = value_codes_.data() + static_cast<size_t>(s0) * value_row_bytes();
  if (f_.value == KvPrecision::F16) {
    K.kv_accum(true, rows, s1 - s0, hd_, P, nq, ps, out);
  } else if (f_.value == KvPrecision::BF16) {
    float* tmp = bf16_block(hd_);
    for (int j = s0; j < s1; j += kBf16Block) {
      const int cnt = std::min(kBf16Block, s1 - j);
      K.bf16_to_f32(reinterpret_cast<const uint16_t*>(rows) + static_cast<size_t>(j - s0) * hd_, tmp,
                    static_cast<int64_t>(cnt) * hd_);
      K.kv_accum(false, tmp, cnt, hd_, P + (j - s0), nq, ps, out);
    }
  } else {
    const int groups = hd_ / tg_;
    K.qv_accum(precision_bits(f_.value), rows, value_params_.data() + 2 * static_cast<size_t>(s0) * groups, s1 - s0,
               hd_, tg_, P, nq, ps, out);
  }
}

size_t QuantSegment::bytes() const {
  return key_codes_.size() + 2 * key_params_.size() + 2 * pending_k_.size() + value_codes_.size() +
         2 * value_params_.size() + sizeof(int32_t) * pos_.size();
}

double QuantSegment::bits_per_element() const {
  return size() == 0 ? 0.0 : static_cast<double>(bytes()) * 8.0 / (2.0 * size() * hd_);
}

}  // namespace kvwise
