#include "kv/kv_quant.h"

#include <algorithm>
#include <cmath>

#include "base/error.h"
#include "tensor/fp16.h"

namespace kvwise {

namespace {
void check_bits(int g, int bits) {
  KV_CHECK(bits == 1 || bits == 2 || bits == 4 || bits == 8, "KV quantisation supports 1, 2, 4 or 8 bits, not {}",
           bits);
  KV_CHECK(g > 0 && (g * bits) % 8 == 0, "a group of {} values at {} bits does not fill whole bytes", g, bits);
}
float to_f16(float x) {
  return fp16_to_fp32(fp32_to_fp16(x));
}
inline int code_at(const uint8_t* codes, int i, int bits) {
  const int per = 8 / bits;
  return (codes[i / per] >> ((i % per) * bits)) & ((1 << bits) - 1);
}
// Value of a code: zero + code * scale (b >= 2), or the quarter points of the range (b = 1).
inline float level(int code, int bits, const QuantParams& p) {
  return bits == 1 ? p.zero + p.scale * (code ? 0.75f : 0.25f) : p.zero + p.scale * static_cast<float>(code);
}
}  // namespace

size_t packed_bytes(int g, int bits) {
  check_bits(g, bits);
  return static_cast<size_t>(g) * static_cast<size_t>(bits) / 8;
}

QuantParams quantize_group(const float* x, int g, int bits, uint8_t* codes) {
  check_bits(g, bits);
  float mn = x[0], mx = x[0];
  for (int i = 1; i < g; ++i) {
    mn = std::min(mn, x[i]);
    mx = std::max(mx, x[i]);
  }
  QuantParams p;
  const int top = (1 << bits) - 1;
  p.zero = to_f16(mn);
  // For b = 1 the scale is the whole range (levels at 1/4 and 3/4 of it); else the step.
  const float range = mx - p.zero;
  p.scale = to_f16(bits == 1 ? range : range / static_cast<float>(top));
  if (p.scale <= 0 || !std::isfinite(p.scale)) p.scale = 1;  // constant group (guard of §1.7)
  std::fill(codes, codes + packed_bytes(g, bits), uint8_t{0});
  const int per = 8 / bits;
  const float mid = p.zero + 0.5f * p.scale;
  for (int i = 0; i < g; ++i) {
    int c;
    if (bits == 1)
      c = x[i] >= mid ? 1 : 0;
    else
      c = std::clamp(static_cast<int>(std::lround((x[i] - p.zero) / p.scale)), 0, top);
    codes[i / per] |= static_cast<uint8_t>(c << ((i % per) * bits));
  }
  return p;
}

void unpack_codes(const uint8_t* codes, int g, int bits, uint8_t* out) {
  for (int i = 0; i < g; ++i) out[i] = static_cast<uint8_t>(code_at(codes, i, bits));
}

void dequantize_group(const uint8_t* codes, int g, int bits, const QuantParams& p, float* out) {
  for (int i = 0; i < g; ++i) out[i] = level(code_at(codes, i, bits), bits, p);
}

float dot_quantized(const float* q, const uint8_t* codes, int g, int bits, const QuantParams& p) {
  // sum q_i (zero + s c_i) = zero * sum q + s * sum q_i c_i (b >= 2); b = 1 is the same with
  // c -> 0.25 + 0.5 c.
  float sq = 0, sqc = 0;
  for (int i = 0; i < g; ++i) {
    sq += q[i];
    sqc += q[i] * static_cast<float>(code_at(codes, i, bits));
  }
  if (bits == 1) return p.zero * sq + p.scale * (0.25f * sq + 0.5f * sqc);
  return p.zero * sq + p.scale * sqc;
}

void axpy_quantized(float w, const uint8_t* codes, int g, int bits, const QuantParams& p, float* out) {
  for (int i = 0; i < g; ++i) out[i] += w * level(code_at(codes, i, bits), bits, p);
}

float quant_error_bound(float mn, float mx, int bits, const QuantParams& p) {
  // Levels cover [zero, zero + top * scale]; F16 rounding of zero and scale can leave the group's
  // ends up to that rounding outside, which clamping turns into extra error.
  const int top = (1 << bits) - 1;
  const float covered_top = bits == 1 ? p.zero + 0.75f * p.scale : p.zero + static_cast<float>(top) * p.scale;
  const float step_err = bits == 1 ? 0.25f * p.scale : 0.5f * p.scale;
  const float outside = std::max({0.0f, p.zero - mn, mx - covered_top - (bits == 1 ? 0.25f * p.scale : 0.0f)});
  return step_err + outside + 1e-6f * std::max(std::fabs(mn), std::fabs(mx));
}

std::vector<float> key_balancer(std::span<const float> q_absmax, std::span<const float> k_absmax, float eps) {
  KV_CHECK(q_absmax.size() == k_absmax.size(), "balancer: {} query maxima for {} key maxima", q_absmax.size(),
           k_absmax.size());
  std::vector<float> b(q_absmax.size());
  for (size_t c = 0; c < b.size(); ++c) b[c] = std::sqrt(std::max(q_absmax[c], eps) / std::max(k_absmax[c], eps));
  return b;
}

}  // namespace kvwise
