// AVX2 + FMA + F16C kernels (compiled with those flags only; selected when the CPU has them).
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>

#include "tensor/fp16.h"
#include "tensor/kernels.h"
#include "tensor/kernels_packed.h"
#include "tensor/quant.h"
#include "tensor/quant_blocks.h"

namespace kvwise {
namespace {
using VF = __m256;
constexpr int W = 8;
inline VF vload(const float* p) {
  return _mm256_loadu_ps(p);
}
inline void vstore(float* p, VF v) {
  _mm256_storeu_ps(p, v);
}
inline VF vzero() {
  return _mm256_setzero_ps();
}
inline VF vset1(float f) {
  return _mm256_set1_ps(f);
}
inline VF vfma(VF a, VF b, VF c) {
  return _mm256_fmadd_ps(a, b, c);
}
inline VF vadd(VF a, VF b) {
  return _mm256_add_ps(a, b);
}
inline float vhsum(VF v) {
  __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  __m128 sh = _mm_movehdup_ps(lo);
  lo = _mm_add_ps(lo, sh);
  sh = _mm_movehl_ps(sh, lo);
  return _mm_cvtss_f32(_mm_add_ss(lo, sh));
}
// Four horizontal sums at once: two rounds of hadd, then the two 128-bit halves.
inline void vreduce4(VF a0, VF a1, VF a2, VF a3, float scale, float* out) {
  const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
  const __m128 r = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  _mm_storeu_ps(out, _mm_mul_ps(r, _mm_set1_ps(scale)));
}
inline VF vmul(VF a, VF b) {
  return _mm256_mul_ps(a, b);
}
inline VF vsub(VF a, VF b) {
  return _mm256_sub_ps(a, b);
}
inline VF vmax(VF a, VF b) {
  return _mm256_max_ps(a, b);
}
inline VF vmin(VF a, VF b) {
  return _mm256_min_ps(a, b);
}
inline VF vround(VF a) {
  return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
inline VF vscale2(VF p, VF k) {  // p * 2^k for integral k
  const __m256i e = _mm256_slli_epi32(_mm256_cvtps_epi32(k), 23);
  return _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), e));
}
inline VF vload_f16(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline VF vload_bf16(const uint16_t* p) {
  const __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
}
// Sum-ready products of 16 int8 values with x[0..16): two 8-lane halves folded into one vector.
inline VF vdot16_i8(__m128i b, const float* x) {
  const VF lo = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
  const VF hi = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(b, 8)));
  return _mm256_fmadd_ps(hi, _mm256_loadu_ps(x + 8), _mm256_mul_ps(lo, _mm256_loadu_ps(x)));
}
inline VF vload_q8(const int8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}
inline VF vload_u8(const uint8_t* p) {  // W bytes -> W floats
  return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}
}  // namespace
#define KVWISE_SIMD_FALLBACK kernels_scalar()
#include "tensor/kernels_simd.inc"
#undef KVWISE_SIMD_FALLBACK

const Kernels& kernels_avx2() {
  static const Kernels k{"avx2",           gemv_rows,           kv_scores, kv_accum,  f16_to_f32,  bf16_to_f32,
                         dequant_row,      exp_shift_sum,       max_of,    qk_tokens, qk_channels, qv_accum,
                         gemm_packed_avx2, quantize_row_q8_avx2};
  return k;
}

}  // namespace kvwise
