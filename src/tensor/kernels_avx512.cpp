// AVX-512 (F, BW, VL, DQ) kernels; head dimensions that are not a multiple of 16 use the AVX2 path.
#include <immintrin.h>

#include "tensor/fp16.h"
#include "tensor/kernels.h"
#include "tensor/quant.h"
#include "tensor/quant_blocks.h"

namespace kvwise {
namespace {
using VF = __m512;
constexpr int W = 16;
inline VF vload(const float* p) { return _mm512_loadu_ps(p); }
inline void vstore(float* p, VF v) { _mm512_storeu_ps(p, v); }
inline VF vzero() { return _mm512_setzero_ps(); }
inline VF vset1(float f) { return _mm512_set1_ps(f); }
inline VF vfma(VF a, VF b, VF c) { return _mm512_fmadd_ps(a, b, c); }
inline VF vadd(VF a, VF b) { return _mm512_add_ps(a, b); }
inline float vhsum(VF v) { return _mm512_reduce_add_ps(v); }
inline VF vload_f16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline VF vload_bf16(const uint16_t* p) {
  const __m512i u = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
}
inline VF vload_q8(const int8_t* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}
}  // namespace
#define KVWISE_SIMD_FALLBACK kernels_avx2()
#include "tensor/kernels_simd.inc"
#undef KVWISE_SIMD_FALLBACK

const Kernels& kernels_avx512() {
  static const Kernels k{"avx512", gemv_rows, kv_scores, kv_accum, f16_to_f32};
  return k;
}

}  // namespace kvwise
