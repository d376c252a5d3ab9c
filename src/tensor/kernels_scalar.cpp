// Scalar reference kernels: the definition of what the SIMD kernels must compute.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "tensor/fp16.h"
#include "tensor/kernels.h"
#include "tensor/kernels_packed.h"
#include "tensor/packed.h"
#include "tensor/quant.h"
#include "tensor/quant_blocks.h"

namespace kvwise {

namespace {

// Q4_0 and Q8_0 weights multiply a Q8-quantized copy of x with integer dot products per block.
void gemv_q8_activations(DType t, const uint8_t* w, size_t rb, const float* x, int64_t n, float* y, int64_t r0,
                         int64_t r1) {
  std::vector<int8_t> xq(static_cast<size_t>(n));
  std::vector<float> xd(static_cast<size_t>(n / QK8_0));
  quantize_activation_q8(x, n, xq.data(), xd.data());
  for (int64_t r = r0; r < r1; ++r) {
    double acc = 0;
    for (int64_t b = 0; b < n / QK8_0; ++b) {
      int32_t isum = 0;
      float dw;
      if (t == DType::Q4_0) {
        const auto& blk = reinterpret_cast<const BlockQ4_0*>(w + static_cast<size_t>(r) * rb)[b];
        dw = fp16_to_fp32(blk.d);
        for (int j = 0; j < 16; ++j)
          isum += ((blk.qs[j] & 0xF) - 8) * xq[static_cast<size_t>(b * 32 + j)] +
                  ((blk.qs[j] >> 4) - 8) * xq[static_cast<size_t>(b * 32 + j + 16)];
      } else {
        const auto& blk = reinterpret_cast<const BlockQ8_0*>(w + static_cast<size_t>(r) * rb)[b];
        dw = fp16_to_fp32(blk.d);
        for (int j = 0; j < 32; ++j) isum += blk.qs[j] * xq[static_cast<size_t>(b * 32 + j)];
      }
      acc += static_cast<double>(dw) * xd[static_cast<size_t>(b)] * isum;
    }
    y[r - r0] = static_cast<float>(acc);
  }
}

void gemv_rows(DType t, const uint8_t* w, size_t rb, const float* x, int64_t n, float* y, int64_t r0, int64_t r1) {
  if (t == DType::Q4_0 || t == DType::Q8_0) return gemv_q8_activations(t, w, rb, x, n, y, r0, r1);
  std::vector<float> row(static_cast<size_t>(n));
  for (int64_t r = r0; r < r1; ++r) {
    dequantize_row(t, w + static_cast<size_t>(r) * rb, row.data(), n);
    double acc = 0;
    for (int64_t i = 0; i < n; ++i) acc += static_cast<double>(row[i]) * x[i];
    y[r - r0] = static_cast<float>(acc);
  }
}

inline float load(bool f16, const void* p, int64_t i) {
  return f16 ? fp16_to_fp32(static_cast<const uint16_t*>(p)[i]) : static_cast<const float*>(p)[i];
}

void kv_scores(bool k_f16, const void* K, int n, int hd, const float* Q, int nq, float scale, float* s, int ss) {
  for (int q = 0; q < nq; ++q)
    for (int j = 0; j < n; ++j) {
      float acc = 0;
      for (int c = 0; c < hd; ++c) acc += Q[q * hd + c] * load(k_f16, K, static_cast<int64_t>(j) * hd + c);
      s[q * ss + j] = acc * scale;
    }
}

void kv_accum(bool v_f16, const void* V, int n, int hd, const float* P, int nq, int ps, float* out) {
  for (int q = 0; q < nq; ++q)
    for (int j = 0; j < n; ++j) {
      const float p = P[q * ps + j];
      for (int c = 0; c < hd; ++c) out[q * hd + c] += p * load(v_f16, V, static_cast<int64_t>(j) * hd + c);
    }
}

void f16_to_f32(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(src[i]);
}

void bf16_to_f32(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(src[i]);
}

void dequant_row_scalar(DType t, const uint8_t* src, float* dst, int64_t n) {
  dequantize_row(t, src, dst, n);
}

float exp_shift_sum(float* x, int64_t n, float shift) {
  float sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += x[i] = std::exp(x[i] - shift);
  return sum;
}

float max_of(const float* x, int64_t n) {
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) m = std::max(m, x[i]);
  return m;
}

// Low-bit KV: code i of a packed group, and the affine map code -> value of a group.
inline int code_at(const uint8_t* codes, int i, int bits) {
  const int per = 8 / bits;
  return (codes[i / per] >> ((i % per) * bits)) & ((1 << bits) - 1);
}
struct Affine {
  float mul, add;
};
inline Affine affine(const uint16_t* params, int bits) {
  const float scale = fp16_to_fp32(params[0]), zero = fp16_to_fp32(params[1]);
  return bits == 1 ? Affine{0.5f * scale, zero + 0.25f * scale} : Affine{scale, zero};
}

void qk_tokens(int bits, const uint8_t* codes, const uint16_t* params, int n, int hd, int group, const float* Q, int nq,
               float scale, float* s, int ss) {
  const int groups = hd / group, row = hd * bits / 8;
  for (int j = 0; j < n; ++j)
    for (int q = 0; q < nq; ++q) {
      float acc = 0;
      for (int gi = 0; gi < groups; ++gi) {
        const Affine a = affine(params + 2 * (j * groups + gi), bits);
        const uint8_t* c = codes + static_cast<int64_t>(j) * row + gi * group * bits / 8;
        for (int i = 0; i < group; ++i)
          acc += Q[q * hd + gi * group + i] * (a.add + a.mul * static_cast<float>(code_at(c, i, bits)));
      }
      s[q * ss + j] = acc * scale;
    }
}

void qk_channels(int bits, const uint8_t* codes, const uint16_t* params, int g, int hd, const float* Q, int nq,
                 float scale, float* s, int ss) {
  const int row = g * bits / 8;
  for (int q = 0; q < nq; ++q)
    for (int t = 0; t < g; ++t) {
      float acc = 0;
      for (int c = 0; c < hd; ++c) {
        const Affine a = affine(params + 2 * c, bits);
        acc += Q[q * hd + c] *
               (a.add + a.mul * static_cast<float>(code_at(codes + static_cast<int64_t>(c) * row, t, bits)));
      }
      s[q * ss + t] = acc * scale;
    }
}

void qv_accum(int bits, const uint8_t* codes, const uint16_t* params, int n, int hd, int group, const float* P, int nq,
              int ps, float* out) {
  const int groups = hd / group, row = hd * bits / 8;
  for (int q = 0; q < nq; ++q)
    for (int j = 0; j < n; ++j) {
      const float p = P[q * ps + j];
      for (int gi = 0; gi < groups; ++gi) {
        const Affine a = affine(params + 2 * (j * groups + gi), bits);
        const uint8_t* c = codes + static_cast<int64_t>(j) * row + gi * group * bits / 8;
        for (int i = 0; i < group; ++i)
          out[q * hd + gi * group + i] += p * (a.add + a.mul * static_cast<float>(code_at(c, i, bits)));
      }
    }
}

}  // namespace

const Kernels& kernels_scalar() {
  static const Kernels k{
      "scalar",      gemv_rows, kv_scores, kv_accum,    f16_to_f32, bf16_to_f32,        dequant_row_scalar,
      exp_shift_sum, max_of,    qk_tokens, qk_channels, qv_accum,   gemm_packed_scalar, quantize_row_q8_reference};
  return k;
}

}  // namespace kvwise
