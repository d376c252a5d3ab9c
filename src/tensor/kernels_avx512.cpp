// AVX-512 (F, BW, VL, DQ) kernels; head dimensions that are not a multiple of 16 use the AVX2 path.
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

namespace {

// 1-bit KV through AVX-512 mask registers (SpeCache's hot copy): a code bit decides whether a lane
// adds a broadcast weight, so 1-bit codes are never unpacked or converted to floats, and the sums of
// a block of query rows stay in registers for the whole run of tokens (keys) or channels (values).

inline __mmask16 mask16_at(const uint8_t* p) {
  uint16_t m;
  __builtin_memcpy(&m, p, 2);
  return m;
}

// Per-channel keys of one group, g = 16 * TV tokens, RB query rows: acc[r][t] = sum_c coef[r][c] * bit(c, t).
template <int TV, int RB>
void qk1_block(const uint8_t* codes, int row_bytes, const float* coef, int hd, const float* base, float scale, float* s,
               int ss) {
  VF acc[RB][TV];
  for (int r = 0; r < RB; ++r)
    for (int v = 0; v < TV; ++v) acc[r][v] = vzero();
  for (int c = 0; c < hd; ++c) {
    const uint8_t* b = codes + static_cast<int64_t>(c) * row_bytes;
    __mmask16 m[TV];
    for (int v = 0; v < TV; ++v) m[v] = mask16_at(b + 2 * v);
    for (int r = 0; r < RB; ++r) {
      const VF w = vset1(coef[r * hd + c]);
      for (int v = 0; v < TV; ++v) acc[r][v] = _mm512_mask_add_ps(acc[r][v], m[v], acc[r][v], w);
    }
  }
  const VF sc = vset1(scale);
  for (int r = 0; r < RB; ++r) {
    const VF b = vset1(base[r]);
    for (int v = 0; v < TV; ++v) vstore(s + r * ss + v * W, vmul(vadd(acc[r][v], b), sc));
  }
}

// Query rows [r0, nq) in blocks of RB rows whose sums stay in registers, the rest in smaller blocks:
// block.template operator()<B>(first row) for each block of B rows.
template <int RB, class Block>
void for_row_blocks(int nq, const Block& block, int r0 = 0) {
  for (; nq - r0 >= RB; r0 += RB) block.template operator()<RB>(r0);
  if constexpr (RB > 1)
    if (r0 < nq) for_row_blocks<RB - 1>(nq, block, r0);
}

// With VBMI and GFNI, 4 bits at a time through a 16-entry table instead (kv-algorithms §11's 1-bit
// copy is read twice per step, so this is SpeCache's hot loop): the bits of 4 rows at one column form
// a nibble, a table of the 16 possible sums of the 4 rows' weights is built once per query row, and
// one permute looks the sums up for 16 columns. The nibbles of 4 rows come from one byte permute and
// one GF(2) affine transform (an 8 x 8 bit transpose per qword).
#define KVWISE_LUT_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vbmi,gfni,fma,avx2")))

bool lut_supported() {
  static const bool ok = __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("gfni");
  return ok;
}

// Byte-permute indices: the bytes of 4 rows of KB bytes (row t's byte k at t * KB + k) to qwords whose
// byte 7 - t is row t's byte k (qword k - 8 * half); bytes 0..3 of every qword are left zero.
struct NibbleIndex {
  alignas(64) uint8_t gather[2][2][64] = {};  // [KB == 16][half]
  alignas(64) uint8_t lane[4][64] = {};       // dword lane l of vector v <- nibble byte 16 v + l
  alignas(64) float bit[4][16] = {};          // bit[t][l] = bit t of l
  alignas(64) uint8_t code4[8][64] = {};      // 4-bit codes: dword lane l of vector v <- byte 8 v + l / 2
  constexpr NibbleIndex() {
    for (int wide = 0; wide < 2; ++wide)
      for (int half = 0; half < 2; ++half)
        for (int p = 0; p < 64; ++p) {
          const int k = p / 8 + 8 * half, t = 7 - p % 8;
          gather[wide][half][p] = static_cast<uint8_t>(t < 4 ? t * (wide ? 16 : 8) + k : 0);
        }
    for (int v = 0; v < 4; ++v)
      for (int p = 0; p < 64; ++p) lane[v][p] = static_cast<uint8_t>(p % 4 == 0 ? 16 * v + p / 4 : 0);
    for (int t = 0; t < 4; ++t)
      for (int l = 0; l < 16; ++l) bit[t][l] = static_cast<float>((l >> t) & 1);
    for (int v = 0; v < 8; ++v)
      for (int l = 0; l < 16; ++l) code4[v][4 * l] = static_cast<uint8_t>(8 * v + l / 2);
  }
};
constexpr NibbleIndex kNib;  // constant-initialised: no start-up code compiled for AVX-512

// nib[h] byte e = the nibble of column 64 h + e of 4 consecutive rows of KB (8 or 16) bytes.
template <int KB>
KVWISE_LUT_TARGET inline void nibbles4(const uint8_t* rows, __m512i* nib) {
  const __m512i unit = _mm512_set1_epi64(static_cast<long long>(0x8040201008040201ULL));
  constexpr __mmask64 kHigh = 0xF0F0F0F0F0F0F0F0ULL;
  const __m512i src = KB == 8 ? _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows)))
                              : _mm512_loadu_si512(rows);
  for (int h = 0; h < KB / 8; ++h) {
    const __m512i g = _mm512_load_si512(kNib.gather[KB == 16][h]);
    const __m512i data = _mm512_maskz_permutexvar_epi8(kHigh, g, src);
    nib[h] = _mm512_gf2p8affine_epi64_epi8(unit, data, 0);
  }
}

// The table of the 16 sums of w0..w3: T[l] = sum over the set bits t of l of w_t.
KVWISE_LUT_TARGET inline __m512 table4(float w0, float w1, float w2, float w3) {
  __m512 t = _mm512_mul_ps(_mm512_set1_ps(w0), _mm512_load_ps(kNib.bit[0]));
  t = _mm512_fmadd_ps(_mm512_set1_ps(w1), _mm512_load_ps(kNib.bit[1]), t);
  t = _mm512_fmadd_ps(_mm512_set1_ps(w2), _mm512_load_ps(kNib.bit[2]), t);
  return _mm512_fmadd_ps(_mm512_set1_ps(w3), _mm512_load_ps(kNib.bit[3]), t);
}

// Keys, per-channel groups of g = 16 * TV tokens (TV = 4 or 8): 4 channels at a time.
template <int TV, int RB>
KVWISE_LUT_TARGET void qk1_lut_block(const uint8_t* codes, const float* coef, int hd, const float* base, float scale,
                                     float* s, int ss) {
  constexpr int KB = TV * 2;
  __m512 acc[RB][TV];
  for (int r = 0; r < RB; ++r)
    for (int v = 0; v < TV; ++v) acc[r][v] = _mm512_setzero_ps();
  for (int c = 0; c < hd; c += 4) {
    __m512i nib[KB / 8], idx[TV];
    nibbles4<KB>(codes + static_cast<int64_t>(c) * KB, nib);
    for (int v = 0; v < TV; ++v) idx[v] = _mm512_permutexvar_epi8(_mm512_load_si512(kNib.lane[v % 4]), nib[v / 4]);
    for (int r = 0; r < RB; ++r) {
      const float* w = coef + r * hd + c;
      const __m512 T = table4(w[0], w[1], w[2], w[3]);
      for (int v = 0; v < TV; ++v) acc[r][v] = _mm512_add_ps(acc[r][v], _mm512_permutexvar_ps(idx[v], T));
    }
  }
  const __m512 sc = _mm512_set1_ps(scale);
  for (int r = 0; r < RB; ++r) {
    const __m512 b = _mm512_set1_ps(base[r]);
    for (int v = 0; v < TV; ++v) _mm512_storeu_ps(s + r * ss + v * 16, _mm512_mul_ps(_mm512_add_ps(acc[r][v], b), sc));
  }
}

// Values, per-token, hd = 16 * CV channels (CV = 4 or 8): 4 tokens at a time; a tail of fewer than 4
// tokens is left to the caller.
template <int CV, int RB>
KVWISE_LUT_TARGET void qv1_lut_block(const uint8_t* codes, int n, int groups, const int* vgroup, const float* wm,
                                     int wstride, __m512 (&acc)[RB][CV]) {
  constexpr int KB = CV * 2;
  for (int j = 0; j + 4 <= n; j += 4) {
    __m512i nib[KB / 8], idx[CV];
    nibbles4<KB>(codes + static_cast<int64_t>(j) * KB, nib);
    for (int v = 0; v < CV; ++v) idx[v] = _mm512_permutexvar_epi8(_mm512_load_si512(kNib.lane[v % 4]), nib[v / 4]);
    const float* w = wm + j * groups;
    for (int r = 0; r < RB; ++r) {
      const float* wr = w + r * wstride;
      if (groups == 1) {
        const __m512 T = table4(wr[0], wr[1], wr[2], wr[3]);
        for (int v = 0; v < CV; ++v) acc[r][v] = _mm512_add_ps(acc[r][v], _mm512_permutexvar_ps(idx[v], T));
      } else {
        for (int v = 0; v < CV; ++v) {
          const int gi = vgroup[v];
          const __m512 T = table4(wr[gi], wr[groups + gi], wr[2 * groups + gi], wr[3 * groups + gi]);
          acc[r][v] = _mm512_add_ps(acc[r][v], _mm512_permutexvar_ps(idx[v], T));
        }
      }
    }
  }
}

// The CV * 16 codes of one token row (4 or 8 bits) as floats in registers. 4-bit codes reach their
// lanes by a byte permute (code c's byte into lane c), a shift (odd codes are high nibbles) and a table
// permute (code -> float); 8-bit codes by widening.
template <int BITS, int CV>
KVWISE_LUT_TARGET inline void row_codes(const uint8_t* b, __m512 (&cf)[CV]) {
  if constexpr (BITS == 8) {
    for (int v = 0; v < CV; ++v)
      cf[v] = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 16 * v))));
  } else {
    const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i odd_shift = _mm512_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4);
    const __m512i src = CV == 4 ? _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b)))
                                : _mm512_loadu_si512(b);
    for (int v = 0; v < CV; ++v) {
      const __m512i lanes = _mm512_permutexvar_epi8(_mm512_load_si512(kNib.code4[v]), src);
      cf[v] = _mm512_permutexvar_ps(_mm512_srlv_epi32(lanes, odd_shift), iota);
    }
  }
}

// Per-token 4- or 8-bit values, hd = 16 * CV: the codes of a token go to float registers once and the RB
// rows' sums stay in registers.
template <int BITS, int CV, int RB>
KVWISE_LUT_TARGET void qv_codes_block(const uint8_t* codes, int n, int groups, const int* vgroup, const float* wm,
                                      int wstride, __m512 (&acc)[RB][CV]) {
  constexpr int kRow = CV * 2 * BITS;
  for (int j = 0; j < n; ++j) {
    __m512 cf[CV];
    row_codes<BITS, CV>(codes + static_cast<int64_t>(j) * kRow, cf);
    const float* w = wm + j * groups;
    for (int r = 0; r < RB; ++r) {
      if (groups == 1) {
        const __m512 x = _mm512_set1_ps(w[r * wstride]);
        for (int v = 0; v < CV; ++v) acc[r][v] = _mm512_fmadd_ps(x, cf[v], acc[r][v]);
      } else {
        for (int v = 0; v < CV; ++v)
          acc[r][v] = _mm512_fmadd_ps(_mm512_set1_ps(w[r * wstride + vgroup[v]]), cf[v], acc[r][v]);
      }
    }
  }
}

// Per-token 4- or 8-bit keys, hd = 16 * CV: each token's codes are dequantised in registers (row_codes,
// then the group's affine map) and dotted with RB query rows; the sums of 4 tokens are reduced together.
template <int BITS, int CV, int RB>
KVWISE_LUT_TARGET void qk_codes_block(const uint8_t* codes, const uint16_t* params, int n, int groups,
                                      const int* vgroup, const float* Q, float scale, float* s, int ss) {
  constexpr int kRow = CV * 2 * BITS, hd = CV * 16;
  for (int j0 = 0; j0 < n; j0 += 4) {
    const int m = n - j0 < 4 ? n - j0 : 4;
    __m512 acc[RB][4];
    for (int r = 0; r < RB; ++r)
      for (int t = 0; t < 4; ++t) acc[r][t] = _mm512_setzero_ps();
    for (int t = 0; t < m; ++t) {
      const int j = j0 + t;
      LowAffine af[CV];
      for (int gi = 0; gi < groups; ++gi)
        af[gi] = low_affine(params + 2 * (static_cast<int64_t>(j) * groups + gi), BITS);
      __m512 deq[CV];
      row_codes<BITS, CV>(codes + static_cast<int64_t>(j) * kRow, deq);
      for (int v = 0; v < CV; ++v) {
        const LowAffine& a = af[vgroup[v]];
        deq[v] = _mm512_fmadd_ps(deq[v], _mm512_set1_ps(a.mul), _mm512_set1_ps(a.add));
      }
      for (int r = 0; r < RB; ++r)
        for (int v = 0; v < CV; ++v)
          acc[r][t] = _mm512_fmadd_ps(_mm512_loadu_ps(Q + r * hd + v * 16), deq[v], acc[r][t]);
    }
    for (int r = 0; r < RB; ++r) {
      float out4[4];
      vreduce4(acc[r][0], acc[r][1], acc[r][2], acc[r][3], scale, out4);
      for (int t = 0; t < m; ++t) s[r * ss + j0 + t] = out4[t];
    }
  }
}

void qk_tokens_512(int bits, const uint8_t* codes, const uint16_t* params, int n, int hd, int group, const float* Q,
                   int nq, float scale, float* s, int ss) {
  const int cv = hd / W;
  if ((bits != 4 && bits != 8) || !lut_supported() || group % W != 0 || hd % group != 0 || hd % W != 0 ||
      (cv != 4 && cv != 8))
    return qk_tokens(bits, codes, params, n, hd, group, Q, nq, scale, s, ss);
  int vgroup[8];
  for (int v = 0; v < cv; ++v) vgroup[v] = v * W / group;
  const int groups = hd / group;
  const auto rows = [&]<int BITS, int CV, int RB>() {
    for_row_blocks<RB>(nq, [&]<int B>(int r0) {
      qk_codes_block<BITS, CV, B>(codes, params, n, groups, vgroup, Q + r0 * hd, scale, s + r0 * ss, ss);
    });
  };
  if (bits == 4) return cv == 4 ? rows.template operator()<4, 4, 3>() : rows.template operator()<4, 8, 2>();
  return cv == 4 ? rows.template operator()<8, 4, 3>() : rows.template operator()<8, 8, 2>();
}

void qk_channels_1bit(bool use_lut, int bits, const uint8_t* codes, const uint16_t* params, int g, int hd,
                      const float* Q, int nq, float scale, float* s, int ss) {
  const int tv = g / W;
  if (bits != 1 || g % W != 0 || hd > kMaxHeadDim || (tv != 1 && tv != 2 && tv != 4 && tv != 8 && tv != 16))
    return qk_channels(bits, codes, params, g, hd, Q, nq, scale, s, ss);
  for (; nq > kMaxLowQ; nq -= kMaxLowQ, Q += kMaxLowQ * hd, s += kMaxLowQ * ss)
    qk_channels_1bit(use_lut, bits, codes, params, g, hd, Q, kMaxLowQ, scale, s, ss);
  // Channel c stands for add_c + mul_c * bit: q.k = sum_c q_c * add_c + sum_c (q_c * mul_c) * bit.
  alignas(64) float coef[kMaxLowQ * kMaxHeadDim];
  float base[kMaxLowQ];
  LowAffine af[kMaxHeadDim];
  for (int c = 0; c < hd; ++c) af[c] = low_affine(params + 2 * c, 1);
  for (int q = 0; q < nq; ++q) {
    float b = 0;
    for (int c = 0; c < hd; ++c) {
      coef[q * hd + c] = Q[q * hd + c] * af[c].mul;
      b += Q[q * hd + c] * af[c].add;
    }
    base[q] = b;
  }
  const int row = g / 8;
  const auto lut_rows = [&]<int TV, int RB>() {
    for_row_blocks<RB>(
        nq, [&]<int B>(int r0) { qk1_lut_block<TV, B>(codes, coef + r0 * hd, hd, base + r0, scale, s + r0 * ss, ss); });
  };
  const auto mask_rows = [&]<int TV, int RB>() {
    for_row_blocks<RB>(nq, [&]<int B>(int r0) {
      qk1_block<TV, B>(codes, row, coef + r0 * hd, hd, base + r0, scale, s + r0 * ss, ss);
    });
  };
  if (use_lut && hd % 4 == 0 && (tv == 4 || tv == 8))
    return tv == 4 ? lut_rows.template operator()<4, 6>() : lut_rows.template operator()<8, 3>();
  switch (tv) {
    case 1:
      return mask_rows.template operator()<1, 8>();
    case 2:
      return mask_rows.template operator()<2, 8>();
    case 4:
      return mask_rows.template operator()<4, 6>();
    case 8:
      return mask_rows.template operator()<8, 3>();
    default:
      return mask_rows.template operator()<16, 1>();
  }
}

// Per-token 1-bit values, hd = 16 * CV channels, RB query rows; wm[r][i] is row r's weight times the
// scale of token-group i (token i / groups), so out[r][c] += sum_j wm[r][j, group of c] * bit(j, c).
constexpr int kValueTile = 256;  // tokens whose weights are prepared at once

template <int CV, int RB>
void qv1_block(const uint8_t* codes, int n, int groups, const int* vgroup, const float* wm, int wstride,
               VF (&acc)[RB][CV]) {
  const int row = CV * 2;
  for (int j = 0; j < n; ++j) {
    const uint8_t* b = codes + static_cast<int64_t>(j) * row;
    __mmask16 m[CV];
    for (int v = 0; v < CV; ++v) m[v] = mask16_at(b + 2 * v);
    const float* w = wm + j * groups;
    if (groups == 1) {
      for (int r = 0; r < RB; ++r) {
        const VF x = vset1(w[r * wstride]);
        for (int v = 0; v < CV; ++v) acc[r][v] = _mm512_mask_add_ps(acc[r][v], m[v], acc[r][v], x);
      }
    } else {
      for (int r = 0; r < RB; ++r)
        for (int v = 0; v < CV; ++v)
          acc[r][v] = _mm512_mask_add_ps(acc[r][v], m[v], acc[r][v], vset1(w[r * wstride + vgroup[v]]));
    }
  }
}

// Per-token values of 1 bit (or 4 and 8 bits with the table path), RB query rows at once: each tile's
// weights times the groups' scales are prepared first (wm), the zero points' share summed apart.
template <int CV, int RB>
void qv_rows(bool use_lut, int bits, const uint8_t* codes, const uint16_t* params, int n, int group, const float* P,
             int nq, int ps, float* out) {
  constexpr int hd = CV * W;
  const int groups = hd / group;
  int vgroup[CV];
  for (int v = 0; v < CV; ++v) vgroup[v] = v * W / group;
  alignas(64) float mul[kValueTile * (hd / W)], add[kValueTile * (hd / W)];
  alignas(64) float wm[RB * kValueTile * (hd / W)];
  const int wstride = kValueTile * groups;
  for (; nq > 0; nq -= RB, P += RB * ps, out += RB * hd) {
    if (nq < RB) {
      if constexpr (RB > 1) qv_rows<CV, RB - 1>(use_lut, bits, codes, params, n, group, P, nq, ps, out);
      return;
    }
    VF acc[RB][CV];
    float addsum[RB][hd / W];
    for (int r = 0; r < RB; ++r) {
      for (int v = 0; v < CV; ++v) acc[r][v] = vzero();
      for (int gi = 0; gi < groups; ++gi) addsum[r][gi] = 0;
    }
    for (int j0 = 0; j0 < n; j0 += kValueTile) {
      const int len = n - j0 < kValueTile ? n - j0 : kValueTile;
      for (int i = 0; i < len * groups; ++i) {
        const LowAffine a = low_affine(params + 2 * (static_cast<int64_t>(j0) * groups + i), bits);
        mul[i] = a.mul;
        add[i] = a.add;
      }
      for (int r = 0; r < RB; ++r) {
        const float* p = P + r * ps + j0;
        float* w = wm + r * wstride;
        if (groups == 1) {
          float s = 0;
          for (int j = 0; j < len; ++j) {
            w[j] = p[j] * mul[j];
            s += p[j] * add[j];
          }
          addsum[r][0] += s;
        } else {
          for (int j = 0; j < len; ++j)
            for (int gi = 0; gi < groups; ++gi) {
              w[j * groups + gi] = p[j] * mul[j * groups + gi];
              addsum[r][gi] += p[j] * add[j * groups + gi];
            }
        }
      }
      const uint8_t* tile = codes + static_cast<int64_t>(j0) * (hd * bits / 8);
      if (bits == 4 || bits == 8) {
        if constexpr (CV == 4 || CV == 8) {
          if (bits == 4)
            qv_codes_block<4, CV, RB>(tile, len, groups, vgroup, wm, wstride, acc);
          else
            qv_codes_block<8, CV, RB>(tile, len, groups, vgroup, wm, wstride, acc);
        }
        continue;
      }
      int done = 0;
      if constexpr (CV == 4 || CV == 8)
        if (use_lut) {
          done = len / 4 * 4;
          qv1_lut_block<CV, RB>(tile, done, groups, vgroup, wm, wstride, acc);
        }
      qv1_block<CV, RB>(tile + static_cast<int64_t>(done) * (hd / 8), len - done, groups, vgroup, wm + done * groups,
                        wstride, acc);
    }
    for (int r = 0; r < RB; ++r)
      for (int v = 0; v < CV; ++v) {
        float* o = out + r * hd + v * W;
        vstore(o, vadd(vload(o), vadd(acc[r][v], vset1(addsum[r][vgroup[v]]))));
      }
  }
}

void qv_accum_lowbit(bool use_lut, int bits, const uint8_t* codes, const uint16_t* params, int n, int hd, int group,
                     const float* P, int nq, int ps, float* out) {
  const int cv = hd / W;
  const bool shape = group % W == 0 && hd % group == 0 && hd % W == 0;
  if ((bits == 4 || bits == 8) && use_lut && shape && (cv == 4 || cv == 8)) {
    if (cv == 4) return qv_rows<4, 6>(use_lut, bits, codes, params, n, group, P, nq, ps, out);
    return qv_rows<8, 2>(use_lut, bits, codes, params, n, group, P, nq, ps, out);
  }
  if (bits != 1 || !shape || (cv != 1 && cv != 2 && cv != 4 && cv != 8))
    return qv_accum(bits, codes, params, n, hd, group, P, nq, ps, out);
  switch (cv) {
    case 1:
      return qv_rows<1, 8>(use_lut, bits, codes, params, n, group, P, nq, ps, out);
    case 2:
      return qv_rows<2, 8>(use_lut, bits, codes, params, n, group, P, nq, ps, out);
    case 4:
      return qv_rows<4, 6>(use_lut, bits, codes, params, n, group, P, nq, ps, out);
    default:
      return qv_rows<8, 3>(use_lut, bits, codes, params, n, group, P, nq, ps, out);
  }
}

void qk_channels_512(int bits, const uint8_t* codes, const uint16_t* params, int g, int hd, const float* Q, int nq,
                     float scale, float* s, int ss) {
  qk_channels_1bit(lut_supported(), bits, codes, params, g, hd, Q, nq, scale, s, ss);
}
void qv_accum_512(int bits, const uint8_t* codes, const uint16_t* params, int n, int hd, int group, const float* P,
                  int nq, int ps, float* out) {
  qv_accum_lowbit(lut_supported(), bits, codes, params, n, hd, group, P, nq, ps, out);
}
void qk_channels_masks(int bits, const uint8_t* codes, const uint16_t* params, int g, int hd, const float* Q, int nq,
                       float scale, float* s, int ss) {
  qk_channels_1bit(false, bits, codes, params, g, hd, Q, nq, scale, s, ss);
}
void qv_accum_masks(int bits, const uint8_t* codes, const uint16_t* params, int n, int hd, int group, const float* P,
                    int nq, int ps, float* out) {
  qv_accum_lowbit(false, bits, codes, params, n, hd, group, P, nq, ps, out);
}

}  // namespace

const Kernels& kernels_avx512() {
  static const Kernels k{"avx512",         gemv_rows,           kv_scores, kv_accum,      f16_to_f32,      bf16_to_f32,
                         dequant_row,      exp_shift_sum,       max_of,    qk_tokens_512, qk_channels_512, qv_accum_512,
                         gemm_packed_avx2, quantize_row_q8_avx2};
  return k;
}

const Kernels& kernels_avx512_masks() {
  static const Kernels k{"avx512 without VBMI/GFNI",
                         gemv_rows,
                         kv_scores,
                         kv_accum,
                         f16_to_f32,
                         bf16_to_f32,
                         dequant_row,
                         exp_shift_sum,
                         max_of,
                         qk_tokens,
                         qk_channels_masks,
                         qv_accum_masks,
                         gemm_packed_avx2,
                         quantize_row_q8_avx2};
  return k;
}

}  // namespace kvwise
