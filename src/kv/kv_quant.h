// Quantisation primitives for low-precision KV (kv-algorithms.md §1.7): asymmetric uniform b-bit
// groups with an F16 scale and zero point, codes packed 8/b per byte (b = 1, 2, 4, 8), the 1-bit
// variant with levels at the quarter points of the range (SpeCache), a dot product of a float query
// with a quantised group that dequantises in registers, and MiKV's per-channel key balancer.
// These are the building blocks of quantised KV pages (issue 5); the pages themselves are not yet
// part of the KV store.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

namespace kvwise {

struct QuantParams {
  float scale = 1, zero = 0;  // already rounded to F16: what dequantisation uses
};

// Bytes of the packed codes of a group of g values at b bits (g * b must be a multiple of 8).
size_t packed_bytes(int g, int bits);
// Quantises x[0..g) to b bits: codes (packed_bytes(g, b) bytes) and the group's scale and zero.
// b = 1 uses the quarter-point levels: code = x >= (min + max) / 2, value = min + range * (1/4 or 3/4).
QuantParams quantize_group(const float* x, int g, int bits, uint8_t* codes);
void dequantize_group(const uint8_t* codes, int g, int bits, const QuantParams& p, float* out);
// The g codes of a packed group, one per byte.
void unpack_codes(const uint8_t* codes, int g, int bits, uint8_t* out);
// sum_i q[i] * dequantized[i], without writing the dequantized group anywhere.
float dot_quantized(const float* q, const uint8_t* codes, int g, int bits, const QuantParams& p);
// out[i] += w * dequantized[i] (the value side of attention).
void axpy_quantized(float w, const uint8_t* codes, int g, int bits, const QuantParams& p, float* out);
// Largest error |x - dequantized| the quantiser allows for a group with this range and parameters
// (half a step for b >= 2, a quarter of the range for b = 1), plus F16 rounding of scale and zero.
float quant_error_bound(float min, float max, int bits, const QuantParams& p);

// MiKV's outlier balancer for one KV head: b_c = sqrt(max_t |q_tc| / max_t |k_tc|) per channel, with
// the query maximum over all query heads of the group. Keys are stored as k_c * b_c and queries
// used as q_c / b_c, so q'.k' = q.k before quantisation. eps floors both maxima.
std::vector<float> key_balancer(std::span<const float> q_absmax, std::span<const float> k_absmax, float eps = 1e-6f);

}  // namespace kvwise
