// AVX2 kernels over packed 8-row weight groups (tensor/packed.h) and the int8 activation quantizer.
// Compiled with AVX2/FMA/F16C flags; the AVX-512 kernel set uses them too (every AVX-512 CPU has AVX2).
//
// Each kernel computes NX activation rows against one group at a time (NX <= 4): the weight bytes are
// unpacked once per chunk and reused for every row, so one kernel serves decode (NX = 1) and prefill
// (the integer GEMM). Bounds of the 16-bit partial sums: maddubs of a code c <= 15 with |x| <= 127 is at
// most 2 * 15 * 127 = 3810 per lane, so 8 of them add up within int16 (30,480); 5-bit codes allow 4
// (31,496), 6-bit codes 2 (32,004); Q8_0's signed bytes go to 32 bits after every multiply.
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/kernels_packed.h"
#include "tensor/packed.h"
#include "tensor/packed_layout.h"

namespace kvwise {
namespace {

// Asks for the bytes of the next block ahead of their use: the hardware prefetchers alone leave the
// kernels with the most arithmetic per byte (Q5_K, Q6_K) waiting on DRAM (measured: 3.5 GB/s vs 12 in cache).
inline void prefetch_block(const uint8_t* p, size_t bytes) {
  for (size_t o = 0; o < bytes; o += 64) _mm_prefetch(reinterpret_cast<const char*>(p + o), _MM_HINT_T0);
}

inline __m256i load256(const void* p) {
  return _mm256_loadu_si256(static_cast<const __m256i*>(p));
}
inline __m256i bcast4(const int8_t* p) {
  int32_t v;
  memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}
inline __m256 load_f16x8(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline __m256i u8x8_to_i32(const uint8_t* p) {
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}
inline __m256i i8x8_to_i32(const int8_t* p) {
  return _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}

template <int NX>
void q4_0(const uint8_t* group, int64_t cols, const QuantizedRow* x, float* const* y) {
  const auto* p = reinterpret_cast<const PackedQ4_0*>(group);
  const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
  __m256 acc[NX];
  for (int i = 0; i < NX; ++i) acc[i] = _mm256_setzero_ps();
  for (int64_t b = 0; b < cols / 32; ++b) {
    if (b % 4 == 0) prefetch_block(reinterpret_cast<const uint8_t*>(p + b + 8), 4 * sizeof(PackedQ4_0));
    __m256i s16[NX];
    for (int i = 0; i < NX; ++i) s16[i] = _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {
      const __m256i w = load256(p[b].qs + 32 * c);
      const __m256i lo = _mm256_and_si256(w, m4), hi = _mm256_and_si256(_mm256_srli_epi16(w, 4), m4);
      for (int i = 0; i < NX; ++i) {
        const int8_t* xq = x[i].q + 32 * b + 4 * c;
        const __m256i t =
            _mm256_add_epi16(_mm256_maddubs_epi16(lo, bcast4(xq)), _mm256_maddubs_epi16(hi, bcast4(xq + 16)));
        s16[i] = c == 0 ? t : _mm256_add_epi16(s16[i], t);
      }
    }
    // y += dw * (xd * <code, xq> - 8 * xd * sum(xq)): the zero point as one float term per block.
    const __m256 dw = load_f16x8(p[b].d);
    for (int i = 0; i < NX; ++i) {
      const __m256 v = _mm256_fmadd_ps(_mm256_set1_ps(x[i].d[b]), _mm256_cvtepi32_ps(_mm256_madd_epi16(s16[i], ones)),
                                       _mm256_set1_ps(-8.0f * x[i].dsum[b]));
      acc[i] = _mm256_fmadd_ps(dw, v, acc[i]);
    }
  }
  for (int i = 0; i < NX; ++i) _mm256_storeu_ps(y[i], acc[i]);
}

template <int NX>
void q8_0(const uint8_t* group, int64_t cols, const QuantizedRow* x, float* const* y) {
  const auto* p = reinterpret_cast<const PackedQ8_0*>(group);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[NX];
  for (int i = 0; i < NX; ++i) acc[i] = _mm256_setzero_ps();
  for (int64_t b = 0; b < cols / 32; ++b) {
    if (b % 2 == 0) prefetch_block(reinterpret_cast<const uint8_t*>(p + b + 4), 2 * sizeof(PackedQ8_0));
    __m256i s32[NX];
    for (int i = 0; i < NX; ++i) s32[i] = _mm256_setzero_si256();
    for (int c = 0; c < 8; ++c) {
      const __m256i w = load256(p[b].qs + 32 * c);
      const __m256i aw = _mm256_sign_epi8(w, w);
      for (int i = 0; i < NX; ++i) {
        const __m256i xs = _mm256_sign_epi8(bcast4(x[i].q + 32 * b + 4 * c), w);
        s32[i] = _mm256_add_epi32(s32[i], _mm256_madd_epi16(_mm256_maddubs_epi16(aw, xs), ones));
      }
    }
    const __m256 dw = load_f16x8(p[b].d);
    for (int i = 0; i < NX; ++i)
      acc[i] = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_set1_ps(x[i].d[b])), _mm256_cvtepi32_ps(s32[i]), acc[i]);
  }
  for (int i = 0; i < NX; ++i) _mm256_storeu_ps(y[i], acc[i]);
}

// Q4_K and Q5_K (Q5 = true adds the fifth bit from qh): per super-block S = sum_j sc_j * <code, x>_j and
// M = sum_j mn_j * sum(x)_j, then y += d * xd * S - dmin * xd * M.
template <int NX, bool Q5>
void k_quant45(const uint8_t* group, int64_t cols, const QuantizedRow* x, float* const* y) {
  const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1), sixteen = _mm256_set1_epi8(16);
  __m256 acc[NX];
  for (int i = 0; i < NX; ++i) acc[i] = _mm256_setzero_ps();
  const size_t stride = Q5 ? sizeof(PackedQ5_K) : sizeof(PackedQ4_K);
  for (int64_t sb = 0; sb < cols / QK_K; ++sb) {
    const uint8_t* blk = group + static_cast<size_t>(sb) * stride;
    prefetch_block(blk + 2 * stride, stride);
    const auto& p = *reinterpret_cast<const PackedQ4_K*>(blk);
    const uint8_t* qh = Q5 ? reinterpret_cast<const PackedQ5_K*>(blk)->qh : nullptr;
    __m256i S[NX];
    for (int i = 0; i < NX; ++i) S[i] = _mm256_setzero_si256();
    for (int pp = 0; pp < 4; ++pp) {
      const __m256i bit_lo = _mm256_set1_epi8(static_cast<char>(1 << (2 * pp)));
      const __m256i bit_hi = _mm256_set1_epi8(static_cast<char>(1 << (2 * pp + 1)));
      __m256i lo16[NX], hi16[NX], lo32[NX], hi32[NX];
      for (int i = 0; i < NX; ++i) lo16[i] = hi16[i] = lo32[i] = hi32[i] = _mm256_setzero_si256();
      for (int c = 0; c < 8; ++c) {
        const __m256i w = load256(p.qs + pp * 256 + 32 * c);
        __m256i lo = _mm256_and_si256(w, m4), hi = _mm256_and_si256(_mm256_srli_epi16(w, 4), m4);
        if constexpr (Q5) {
          const __m256i h = load256(qh + 32 * c);
          lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(h, bit_lo), bit_lo), sixteen));
          hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(h, bit_hi), bit_hi), sixteen));
        }
        for (int i = 0; i < NX; ++i) {
          const int8_t* xq = x[i].q + sb * QK_K + 64 * pp + 4 * c;
          const __m256i a = _mm256_maddubs_epi16(lo, bcast4(xq));
          const __m256i bb = _mm256_maddubs_epi16(hi, bcast4(xq + 32));
          const bool first = Q5 ? c % 4 == 0 : c == 0;
          lo16[i] = first ? a : _mm256_add_epi16(lo16[i], a);
          hi16[i] = first ? bb : _mm256_add_epi16(hi16[i], bb);
          if (Q5 && c == 3) {
            lo32[i] = _mm256_madd_epi16(lo16[i], ones);
            hi32[i] = _mm256_madd_epi16(hi16[i], ones);
          }
        }
      }
      const __m256i sc_lo = u8x8_to_i32(p.sc[2 * pp]), sc_hi = u8x8_to_i32(p.sc[2 * pp + 1]);
      for (int i = 0; i < NX; ++i) {
        __m256i l = _mm256_madd_epi16(lo16[i], ones), h = _mm256_madd_epi16(hi16[i], ones);
        if constexpr (Q5) {
          l = _mm256_add_epi32(l, lo32[i]);
          h = _mm256_add_epi32(h, hi32[i]);
        }
        S[i] = _mm256_add_epi32(S[i], _mm256_add_epi32(_mm256_mullo_epi32(l, sc_lo), _mm256_mullo_epi32(h, sc_hi)));
      }
    }
    __m256i M[NX];
    for (int i = 0; i < NX; ++i) M[i] = _mm256_setzero_si256();
    for (int j = 0; j < 8; ++j) {
      const __m256i mn = u8x8_to_i32(p.mn[j]);
      for (int i = 0; i < NX; ++i) {
        const int16_t* s16 = x[i].sum16 + sb * 16 + 2 * j;
        M[i] = _mm256_add_epi32(M[i], _mm256_mullo_epi32(mn, _mm256_set1_epi32(s16[0] + s16[1])));
      }
    }
    const __m256 d = load_f16x8(p.d), dmin = load_f16x8(p.dmin);
    for (int i = 0; i < NX; ++i) {
      const __m256 xd = _mm256_set1_ps(x[i].d[sb]);
      acc[i] = _mm256_fmadd_ps(_mm256_mul_ps(d, xd), _mm256_cvtepi32_ps(S[i]), acc[i]);
      acc[i] = _mm256_fnmadd_ps(_mm256_mul_ps(dmin, xd), _mm256_cvtepi32_ps(M[i]), acc[i]);
    }
  }
  for (int i = 0; i < NX; ++i) _mm256_storeu_ps(y[i], acc[i]);
}

// Q6_K: y += d * xd * sum_g sc_g * (<code, x>_g - 32 * sum(x)_g) over the 16 groups of 16 elements.
// Element chunk 64i + 4c (i < 4, c < 16) is ql chunk (i odd ? 16 + c : c), low nibble for i < 2, with the
// bits 2i of qh chunk c; its group is 4i + c / 4.
template <int NX>
void q6_k(const uint8_t* group, int64_t cols, const QuantizedRow* x, float* const* y) {
  const auto* blocks = reinterpret_cast<const PackedQ6_K*>(group);
  const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(3), ones = _mm256_set1_epi16(1);
  __m256 acc[NX];
  for (int i = 0; i < NX; ++i) acc[i] = _mm256_setzero_ps();
  for (int64_t sb = 0; sb < cols / QK_K; ++sb) {
    const PackedQ6_K& p = blocks[sb];
    prefetch_block(reinterpret_cast<const uint8_t*>(blocks + sb + 2), sizeof(PackedQ6_K));
    __m256i T[NX];
    for (int i = 0; i < NX; ++i) T[i] = _mm256_setzero_si256();
    for (int part = 0; part < 4; ++part) {
      const uint8_t* ql = p.ql + (part & 1 ? 16 * 32 : 0);
      const __m128i hshift = _mm_cvtsi32_si128(2 * part);
      for (int gq = 0; gq < 4; ++gq) {
        __m256i s16a[NX], s16b[NX];
        for (int i = 0; i < NX; ++i) s16a[i] = s16b[i] = _mm256_setzero_si256();
        for (int cc = 0; cc < 4; ++cc) {
          const int c = 4 * gq + cc;
          const __m256i l = load256(ql + 32 * c);
          const __m256i lo4 = part >= 2 ? _mm256_and_si256(_mm256_srli_epi16(l, 4), m4) : _mm256_and_si256(l, m4);
          const __m256i hi2 =
              _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(load256(p.qh + 32 * c), hshift), m3), 4);
          const __m256i v = _mm256_or_si256(lo4, hi2);
          for (int i = 0; i < NX; ++i) {
            const __m256i pr = _mm256_maddubs_epi16(v, bcast4(x[i].q + sb * QK_K + 64 * part + 4 * c));
            if (cc == 0) s16a[i] = pr;
            if (cc == 1) s16a[i] = _mm256_add_epi16(s16a[i], pr);
            if (cc == 2) s16b[i] = pr;
            if (cc == 3) s16b[i] = _mm256_add_epi16(s16b[i], pr);
          }
        }
        const int g16 = 4 * part + gq;
        const __m256i sc = i8x8_to_i32(p.sc[g16]);
        for (int i = 0; i < NX; ++i) {
          __m256i s32 = _mm256_add_epi32(_mm256_madd_epi16(s16a[i], ones), _mm256_madd_epi16(s16b[i], ones));
          s32 = _mm256_sub_epi32(s32, _mm256_set1_epi32(32 * x[i].sum16[sb * 16 + g16]));
          T[i] = _mm256_add_epi32(T[i], _mm256_mullo_epi32(s32, sc));
        }
      }
    }
    const __m256 d = load_f16x8(p.d);
    for (int i = 0; i < NX; ++i)
      acc[i] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(x[i].d[sb])), _mm256_cvtepi32_ps(T[i]), acc[i]);
  }
  for (int i = 0; i < NX; ++i) _mm256_storeu_ps(y[i], acc[i]);
}

// Prefill on K-quants: a group's super-blocks are unpacked once into bytes (codes 0..63) with their
// scales as 16-bit pairs, then every activation row runs one kernel over them, so the bit unpacking is
// paid once per group instead of once per row. Per super-block and row r:
//   y_r += xd * (d_r * sum_g sc[g][r] * <code, x>_g - e_r * sum_g off[g][r] * sum(x)_g)
// over its 16 groups of 16 elements. Q4_K/Q5_K: sc = the sub-block scale, off = its min, e = dmin;
// Q6_K: sc = the group scale, off = 32 * sc, e = d.
struct CodeBlock {
  uint8_t codes[8][8][32];  // [sub-block j][chunk c][4r + k]: code of element 32j + 4c + k of row r
  int16_t sc[16][16];       // [group g][2r], [2r + 1]: sc[g][r] twice, for madd
  int16_t off[8][16];       // [pair p][2r + h]: off[2p + h][r]
  float d[8], e[8];
};

void unpack_codes(DType t, const uint8_t* group, int64_t nsb, CodeBlock* out) {
  const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
  for (int64_t sb = 0; sb < nsb; ++sb) {
    CodeBlock& cb = out[sb];
    if (t == DType::Q6_K) {
      const auto& p = reinterpret_cast<const PackedQ6_K*>(group)[sb];
      for (int e = 0; e < 64; ++e) {
        const __m256i l = load256(p.ql + 32 * (e % 32));
        const __m256i lo4 = e < 32 ? _mm256_and_si256(l, m4) : _mm256_and_si256(_mm256_srli_epi16(l, 4), m4);
        const __m256i h = _mm256_srl_epi16(load256(p.qh + 32 * (e % 16)), _mm_cvtsi32_si128(2 * (e / 16)));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(cb.codes[e / 8][e % 8]),
                            _mm256_or_si256(lo4, _mm256_slli_epi16(_mm256_and_si256(h, m3), 4)));
      }
      for (int r = 0; r < 8; ++r) {
        for (int g = 0; g < 16; ++g) cb.sc[g][2 * r] = cb.sc[g][2 * r + 1] = p.sc[g][r];
        for (int g = 0; g < 16; ++g) cb.off[g / 2][2 * r + g % 2] = static_cast<int16_t>(32 * p.sc[g][r]);
        cb.d[r] = cb.e[r] = _cvtsh_ss(p.d[r]);
      }
      continue;
    }
    const bool q5 = t == DType::Q5_K;
    const uint8_t* blk = group + static_cast<size_t>(sb) * (q5 ? sizeof(PackedQ5_K) : sizeof(PackedQ4_K));
    const auto& p = *reinterpret_cast<const PackedQ4_K*>(blk);
    for (int pp = 0; pp < 4; ++pp)
      for (int c = 0; c < 8; ++c) {
        const __m256i w = load256(p.qs + pp * 256 + 32 * c);
        __m256i lo = _mm256_and_si256(w, m4), hi = _mm256_and_si256(_mm256_srli_epi16(w, 4), m4);
        if (q5) {
          const __m256i h = load256(reinterpret_cast<const PackedQ5_K*>(blk)->qh + 32 * c);
          const __m256i hl = _mm256_and_si256(_mm256_srl_epi16(h, _mm_cvtsi32_si128(2 * pp)), one);
          const __m256i hh = _mm256_and_si256(_mm256_srl_epi16(h, _mm_cvtsi32_si128(2 * pp + 1)), one);
          lo = _mm256_or_si256(lo, _mm256_slli_epi16(hl, 4));
          hi = _mm256_or_si256(hi, _mm256_slli_epi16(hh, 4));
        }
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(cb.codes[2 * pp][c]), lo);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(cb.codes[2 * pp + 1][c]), hi);
      }
    for (int r = 0; r < 8; ++r) {
      for (int g = 0; g < 16; ++g) cb.sc[g][2 * r] = cb.sc[g][2 * r + 1] = p.sc[g / 2][r];
      for (int g = 0; g < 16; ++g) cb.off[g / 2][2 * r + g % 2] = p.mn[g / 2][r];
      cb.d[r] = _cvtsh_ss(p.d[r]);
      cb.e[r] = _cvtsh_ss(p.dmin[r]);
    }
  }
}

// Bounds: codes <= 63, so two maddubs sum within int16 (32,004); madd by a scale <= 127 and the sums
// over a super-block stay far inside int32.
// cb holds super-blocks [s0, s0 + nsb) of the group; accumulate adds to y (a later column tile).
template <int NX>
void codes_rows(const CodeBlock* cb, int64_t s0, int64_t nsb, const QuantizedRow* x, float* const* y, bool accumulate) {
  __m256 acc[NX];
  for (int i = 0; i < NX; ++i) acc[i] = accumulate ? _mm256_loadu_ps(y[i]) : _mm256_setzero_ps();
  for (int64_t sb = s0; sb < s0 + nsb; ++sb) {
    const CodeBlock& b = cb[sb - s0];
    __m256i T[NX], O[NX];
    for (int i = 0; i < NX; ++i) T[i] = O[i] = _mm256_setzero_si256();
    for (int g = 0; g < 16; ++g) {
      const int j = g / 2, c0 = 4 * (g % 2);
      const __m256i scp = load256(b.sc[g]);
      const __m256i w0 = load256(b.codes[j][c0]), w1 = load256(b.codes[j][c0 + 1]);
      const __m256i w2 = load256(b.codes[j][c0 + 2]), w3 = load256(b.codes[j][c0 + 3]);
      for (int i = 0; i < NX; ++i) {
        const int8_t* xq = x[i].q + sb * QK_K + 32 * j + 4 * c0;
        const __m256i a =
            _mm256_add_epi16(_mm256_maddubs_epi16(w0, bcast4(xq)), _mm256_maddubs_epi16(w1, bcast4(xq + 4)));
        const __m256i bb =
            _mm256_add_epi16(_mm256_maddubs_epi16(w2, bcast4(xq + 8)), _mm256_maddubs_epi16(w3, bcast4(xq + 12)));
        T[i] = _mm256_add_epi32(T[i], _mm256_add_epi32(_mm256_madd_epi16(a, scp), _mm256_madd_epi16(bb, scp)));
      }
    }
    for (int pr = 0; pr < 8; ++pr) {
      const __m256i offp = load256(b.off[pr]);
      for (int i = 0; i < NX; ++i) {
        const int16_t* s16 = x[i].sum16 + sb * 16 + 2 * pr;
        const int32_t pair = static_cast<int32_t>(static_cast<uint16_t>(s16[0]) |
                                                  (static_cast<uint32_t>(static_cast<uint16_t>(s16[1])) << 16));
        O[i] = _mm256_add_epi32(O[i], _mm256_madd_epi16(offp, _mm256_set1_epi32(pair)));
      }
    }
    const __m256 d = _mm256_loadu_ps(b.d), e = _mm256_loadu_ps(b.e);
    for (int i = 0; i < NX; ++i) {
      const __m256 xd = _mm256_set1_ps(x[i].d[sb]);
      acc[i] = _mm256_fmadd_ps(_mm256_mul_ps(d, xd), _mm256_cvtepi32_ps(T[i]), acc[i]);
      acc[i] = _mm256_fnmadd_ps(_mm256_mul_ps(e, xd), _mm256_cvtepi32_ps(O[i]), acc[i]);
    }
  }
  for (int i = 0; i < NX; ++i) _mm256_storeu_ps(y[i], acc[i]);
}

// Per-thread scratch for one group's CodeBlocks (malloc, not std::vector: see min64).
CodeBlock* code_scratch(int64_t nsb) {
  struct Scratch {
    CodeBlock* p = nullptr;
    int64_t cap = 0;
    ~Scratch() { free(p); }
  };
  thread_local Scratch s;
  if (s.cap < nsb) {
    free(s.p);
    s.p = static_cast<CodeBlock*>(malloc(static_cast<size_t>(nsb) * sizeof(CodeBlock)));
    if (s.p == nullptr) abort();
    s.cap = nsb;
  }
  return s.p;
}

// Not std::min/max: templates instantiated in a file with ISA flags could be chosen by the linker for
// the whole program.
inline int64_t min64(int64_t a, int64_t b) {
  return a < b ? a : b;
}

using GroupKernel = void (*)(const uint8_t*, int64_t, const QuantizedRow*, float* const*);

template <int NX>
GroupKernel group_kernel(DType t) {
  switch (t) {
    case DType::Q4_0:
      return q4_0<NX>;
    case DType::Q8_0:
      return q8_0<NX>;
    case DType::Q4_K:
      return k_quant45<NX, false>;
    case DType::Q5_K:
      return k_quant45<NX, true>;
    case DType::Q6_K:
      return q6_k<NX>;
    default:
      return nullptr;
  }
}

inline float hmax256(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

}  // namespace

void gemm_packed_avx2(DType t, const uint8_t* packed, int64_t cols, const QuantizedRow* x, int nx, float* y,
                      int64_t ldy, int64_t g0, int64_t g1) {
  const GroupKernel kernels[4] = {group_kernel<1>(t), group_kernel<2>(t), group_kernel<3>(t), group_kernel<4>(t)};
  if (kernels[0] == nullptr) return gemm_packed_scalar(t, packed, cols, x, nx, y, ldy, g0, g1);
  const size_t gb = packed_group_bytes(t, cols);
  if (nx >= 8 && (t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K)) {
    using CodeKernel = void (*)(const CodeBlock*, int64_t, int64_t, const QuantizedRow*, float* const*, bool);
    const CodeKernel code_kernels[4] = {codes_rows<1>, codes_rows<2>, codes_rows<3>, codes_rows<4>};
    // Tiles of 2,048 columns (4 activation rows of it: 8 KiB, in L1) over blocks of 8 groups whose
    // unpacked codes (8 x 23 KiB) stay in L2 while every activation row of the chunk passes.
    const int64_t nsb = cols / QK_K, tile = 8, groups = 8;
    const size_t sb_bytes = t == DType::Q6_K   ? sizeof(PackedQ6_K)
                            : t == DType::Q5_K ? sizeof(PackedQ5_K)
                                               : sizeof(PackedQ4_K);
    CodeBlock* cb = code_scratch(tile * groups);
    for (int64_t gb0 = g0; gb0 < g1; gb0 += groups) {
      const int64_t gb1 = min64(g1, gb0 + groups);
      for (int64_t s0 = 0; s0 < nsb; s0 += tile) {
        const int64_t ns = min64(tile, nsb - s0);
        for (int64_t g = gb0; g < gb1; ++g)
          unpack_codes(t, packed + static_cast<size_t>(g) * gb + static_cast<size_t>(s0) * sb_bytes, ns,
                       cb + (g - gb0) * tile);
        for (int i0 = 0; i0 < nx; i0 += 4) {
          const int k = static_cast<int>(min64(4, nx - i0));
          for (int64_t g = gb0; g < gb1; ++g) {
            float* out[4];
            for (int i = 0; i < k; ++i) out[i] = y + (i0 + i) * ldy + (g - g0) * 8;
            code_kernels[k - 1](cb + (g - gb0) * tile, s0, ns, x + i0, out, s0 > 0);
          }
        }
      }
    }
    return;
  }
  // Blocks of groups small enough to stay in L2 while every activation row passes over them.
  const int64_t fit = static_cast<int64_t>((192u << 10) / gb);
  const int64_t block = nx <= 4 ? g1 - g0 : (fit > 1 ? fit : 1);
  for (int64_t b0 = g0; b0 < g1; b0 += block) {
    const int64_t b1 = min64(g1, b0 + block);
    for (int i0 = 0; i0 < nx; i0 += 4) {
      const int k = static_cast<int>(min64(4, nx - i0));
      for (int64_t g = b0; g < b1; ++g) {
        float* out[4];
        for (int i = 0; i < k; ++i) out[i] = y + (i0 + i) * ldy + (g - g0) * 8;
        kernels[k - 1](packed + static_cast<size_t>(g) * gb, cols, x + i0, out);
      }
    }
  }
}

void quantize_row_q8_avx2(const float* x, int64_t n, int block, int8_t* q, float* d, int16_t* sum16) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int64_t b = 0; b < n / block; ++b) {
    const float* xb = x + b * block;
    __m256 amax = _mm256_setzero_ps();
    for (int j = 0; j < block; j += 8) amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, _mm256_loadu_ps(xb + j)));
    const float m = hmax256(amax);
    d[b] = m / 127.0f;
    const __m256 id = _mm256_set1_ps(m > 0 ? 127.0f / m : 0.0f);
    for (int j = 0; j < block; j += 32) {
      __m256i v[4];
      for (int k = 0; k < 4; ++k)
        v[k] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + j + 8 * k), id));  // round to nearest even
      // Pack 32 int32 to int8 in order: packs interleave 128-bit lanes, the permute undoes it.
      const __m256i p16a = _mm256_packs_epi32(v[0], v[1]), p16b = _mm256_packs_epi32(v[2], v[3]);
      const __m256i p8 =
          _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p16a, p16b), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + b * block + j), p8);
    }
  }
  for (int64_t g = 0; g < n / 16; ++g) {
    const __m256i v = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 16 * g)));
    const __m256i s = _mm256_madd_epi16(v, _mm256_set1_epi16(1));
    __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4E));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xB1));
    sum16[g] = static_cast<int16_t>(_mm_cvtsi128_si32(t));
  }
}

}  // namespace kvwise
