// AVX-512 (F, BW, VL, DQ) kernels; head dimensions that are not a multiple of 16 use the AVX2 path.
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>

#include "tensor/fp16.h"
#include "tensor/kernels.h"
#include "tensor/quant.h"
#include "tensor/quant_blocks.h"

namespace kvwise {
namespace {
using VF = __m512;
constexpr int W = 16;
inline VF vload(const float* p) {
  return _mm512_loadu_ps(p);
}
inline void vstore(float* p, VF v) {
  _mm512_storeu_ps(p, v);
}
inline VF vzero() {
  return _mm512_setzero_ps();
}
inline VF vset1(float f) {
  return _mm512_set1_ps(f);
}
inline VF vfma(VF a, VF b, VF c) {
  return _mm512_fmadd_ps(a, b, c);
}
inline VF vadd(VF a, VF b) {
  return _mm512_add_ps(a, b);
}
inline float vhsum(VF v) {
  return _mm512_reduce_add_ps(v);
}
// Four horizontal sums at once: fold each to 256 bits, then hadd rounds as in AVX2.
inline __m256 fold(VF v) {
  return _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
}
inline void vreduce4(VF a0, VF a1, VF a2, VF a3, float scale, float* out) {
  const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(fold(a0), fold(a1)), _mm256_hadd_ps(fold(a2), fold(a3)));
  const __m128 r = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  _mm_storeu_ps(out, _mm_mul_ps(r, _mm_set1_ps(scale)));
}
inline VF vmul(VF a, VF b) {
  return _mm512_mul_ps(a, b);
}
inline VF vsub(VF a, VF b) {
  return _mm512_sub_ps(a, b);
}
inline VF vmax(VF a, VF b) {
  return _mm512_max_ps(a, b);
}
inline VF vmin(VF a, VF b) {
  return _mm512_min_ps(a, b);
}
inline VF vround(VF a) {
  return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
inline VF vscale2(VF p, VF k) {
  return _mm512_scalef_ps(p, k);
}
inline VF vload_f16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline VF vload_bf16(const uint16_t* p) {
  const __m512i u = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
}
// Products of 16 int8 values with x[0..16), one lane each.
inline VF vdot16_i8(__m128i b, const float* x) {
  return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b)), _mm512_loadu_ps(x));
}
inline VF vload_q8(const int8_t* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}
inline VF vload_u8(const uint8_t* p) {  // W bytes -> W floats
  return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}
}  // namespace
#define KVWISE_SIMD_FALLBACK kernels_avx2()
#include "tensor/kernels_simd.inc"
#undef KVWISE_SIMD_FALLBACK

const Kernels& kernels_avx512() {
  static const Kernels k{"avx512",    gemv_rows,     kv_scores, kv_accum,    f16_to_f32,
                         dequant_row, exp_shift_sum, qk_tokens, qk_channels, qv_accum};
  return k;
}

}  // namespace kvwise
