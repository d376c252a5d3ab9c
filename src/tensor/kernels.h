// The hot loops of the engine, one implementation per instruction set (scalar reference, AVX2,
// AVX-512), chosen once at run time. Tests compare every implementation against the scalar one.
#pragma once
#include <cstddef>
#include <cstdint>

#include "tensor/dtype.h"

namespace kvwise {

struct QuantizedRow;  // tensor/packed.h

enum class Isa { Scalar, Avx2, Avx512 };

struct Kernels {
  const char* isa_name;
  // y[r - r0] = dot(row r of W, x) for r in [r0, r1); rows are row_bytes apart, n elements each.
  // Q4_0 and Q8_0 rows multiply a Q8-quantized copy of x (integer dots per block, as ggml does).
  void (*gemv_rows)(DType t, const uint8_t* w, size_t row_bytes, const float* x, int64_t n, float* y, int64_t r0,
                    int64_t r1);
  // scores[q * s_stride + j] = scale * dot(Q[q * hd ..], K[j * hd ..]) for j < n, q < nq.
  // K holds n rows of hd elements, f16 when k_f16 else f32.
  void (*kv_scores)(bool k_f16, const void* K, int n, int hd, const float* Q, int nq, float scale, float* scores,
                    int s_stride);
  // out[q * hd + c] += sum_j P[q * p_stride + j] * V[j * hd + c] for q < nq.
  void (*kv_accum)(bool v_f16, const void* V, int n, int hd, const float* P, int nq, int p_stride, float* out);
  // dst[i] = float(src[i]) for n halves.
  void (*f16_to_f32)(const uint16_t* src, float* dst, int64_t n);
  // dst[i] = float(src[i]) for n bfloat16 values.
  void (*bf16_to_f32)(const uint16_t* src, float* dst, int64_t n);
  // dst = the n values of a weight row of type t (vectorised for F16, Q8_0, Q4_0).
  void (*dequant_row)(DType t, const uint8_t* src, float* dst, int64_t n);
  // x[i] = exp(x[i] - shift) for i < n; returns the sum (softmax numerators; |rel. error| < 1e-6).
  float (*exp_shift_sum)(float* x, int64_t n, float shift);
  // The largest of x[0..n) (-infinity for n = 0); the softmax shift of a score row.
  float (*max_of)(const float* x, int64_t n);

  // Low-bit KV (kv/quant_segment.h). Codes are packed 8/bits per byte in order (bits = 1, 2, 4, 8);
  // every group has an F16 scale and zero (two uint16, params + 2 * group); a code c stands for
  // zero + scale * c, or for bits = 1 the quarter points zero + scale * (1/4 + c/2). Groups are
  // dequantised in registers; nothing of full size is written.
  // Per-token keys: n tokens, token j's codes at codes + j * hd * bits / 8 and its hd / group groups'
  // params at params + j * 2 * (hd / group). scores[q * ss + j] = scale * dot(Q[q * hd ..], key j).
  void (*qk_tokens)(int bits, const uint8_t* codes, const uint16_t* params, int n, int hd, int group, const float* Q,
                    int nq, float scale, float* scores, int ss);
  // Per-channel keys, one group of g tokens: channel c's g codes at codes + c * g * bits / 8, its params at
  // params + 2 * c. scores[q * ss + t] = scale * dot(Q[q * hd ..], key t) for t < g.
  void (*qk_channels)(int bits, const uint8_t* codes, const uint16_t* params, int g, int hd, const float* Q, int nq,
                      float scale, float* scores, int ss);
  // Per-token values (layout as qk_tokens): out[q * hd + c] += sum_j P[q * ps + j] * value j [c].
  void (*qv_accum)(int bits, const uint8_t* codes, const uint16_t* params, int n, int hd, int group, const float* P,
                   int nq, int ps, float* out);

  // Packed weights (tensor/packed.h) times nx quantized rows: y[i * ldy + (g - g0) * 8 + r] = dot(row
  // 8g + r, x[i]) for the groups g in [g0, g1). Integer sums per block, scaled once per block.
  void (*gemm_packed)(DType t, const uint8_t* packed, int64_t cols, const QuantizedRow* x, int nx, float* y,
                      int64_t ldy, int64_t g0, int64_t g1);
  // One row of n activations quantized as QuantizedRow describes (block 32 or 256).
  void (*quantize_row_q8)(const float* x, int64_t n, int block, int8_t* q, float* d, int16_t* sum16);
};

const Kernels& kernels_scalar();
const Kernels& kernels_avx2();
const Kernels& kernels_avx512();
// AVX-512 without its VBMI/GFNI paths for low-bit KV (1-bit tables, 4/8-bit codes in registers): what
// CPUs without those extensions run, 1-bit KV through mask registers; tests compare both sets.
const Kernels& kernels_avx512_masks();

bool isa_supported(Isa isa);
// The best supported set, unless KVWISE_ISA=scalar|avx2|avx512 asks for another (for tests/benchmarks).
const Kernels& kernels();
const Kernels& kernels_for(Isa isa);

}  // namespace kvwise
