#include "tensor/quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "base/error.h"
#include "tensor/fp16.h"
#include "tensor/quant_blocks.h"

namespace kvwise {

namespace {

inline uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

void dequant_q4_k(const BlockQ4_K* b, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(b[i].d), dmin = fp16_to_fp32(b[i].dmin);
    const uint8_t* q = b[i].qs;
    for (int j = 0; j < 8; j += 2) {
      int sc, m;
      q4k_scale_min(j, b[i].scales, &sc, &m);
      const float d1 = d * sc, m1 = dmin * m;
      q4k_scale_min(j + 1, b[i].scales, &sc, &m);
      const float d2 = d * sc, m2 = dmin * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
      q += 32;
    }
  }
}

void dequant_q5_k(const BlockQ5_K* b, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(b[i].d), dmin = fp16_to_fp32(b[i].dmin);
    for (int j = 0; j < 8; ++j) {
      int sc, m;
      q4k_scale_min(j, b[i].scales, &sc, &m);
      const uint8_t* q = b[i].qs + 32 * (j / 2);
      for (int l = 0; l < 32; ++l) {
        const int code = (j % 2 == 0 ? q[l] & 0xF : q[l] >> 4) + (((b[i].qh[l] >> j) & 1) << 4);
        *y++ = d * sc * code - dmin * m;
      }
    }
  }
}

void dequant_q6_k(const BlockQ6_K* b, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(b[i].d);
    const uint8_t* ql = b[i].ql;
    const uint8_t* qh = b[i].qh;
    const int8_t* sc = b[i].scales;
    for (int n = 0; n < QK_K; n += 128) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = static_cast<int8_t>((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = static_cast<int8_t>((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = static_cast<int8_t>((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = static_cast<int8_t>((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = d * sc[is + 0] * q1;
        y[l + 32] = d * sc[is + 2] * q2;
        y[l + 64] = d * sc[is + 4] * q3;
        y[l + 96] = d * sc[is + 6] * q4;
      }
      y += 128;
      ql += 64;
      qh += 32;
      sc += 8;
    }
  }
}

// The remaining llama.cpp types, read (not written): scalar definitions following ggml's reference
// dequantizers; byte layouts in the comments. Products run them through the generic block path.

// Q4_1: {f16 d, f16 m, 16 bytes of 4-bit codes}: x = d * q + m.
void dequant_q4_1(const uint8_t* b, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i, b += 20, y += 32) {
    const float d = fp16_to_fp32(load_u16(b)), m = fp16_to_fp32(load_u16(b + 2));
    for (int j = 0; j < 16; ++j) {
      y[j] = d * (b[4 + j] & 0xF) + m;
      y[j + 16] = d * (b[4 + j] >> 4) + m;
    }
  }
}

// Q5_0 / Q5_1: {f16 d, [f16 m,] 32 fifth bits (u32), 16 bytes of low nibbles}: Q5_0 x = d * (q - 16),
// Q5_1 x = d * q + m.
void dequant_q5(const uint8_t* b, int64_t nb, float* y, bool with_min) {
  const int bytes = with_min ? 24 : 22, h = with_min ? 4 : 2;
  for (int64_t i = 0; i < nb; ++i, b += bytes, y += 32) {
    const float d = fp16_to_fp32(load_u16(b)), m = with_min ? fp16_to_fp32(load_u16(b + 2)) : 0.0f;
    uint32_t qh;
    std::memcpy(&qh, b + h, 4);
    const uint8_t* qs = b + h + 4;
    for (int j = 0; j < 16; ++j) {
      const int x0 = (qs[j] & 0xF) | (((qh >> j) << 4) & 0x10);
      const int x1 = (qs[j] >> 4) | ((qh >> (j + 12)) & 0x10);
      y[j] = with_min ? d * x0 + m : d * (x0 - 16);
      y[j + 16] = with_min ? d * x1 + m : d * (x1 - 16);
    }
  }
}

// Q2_K: {16 bytes of 4-bit scale | 4-bit min, 64 bytes of 2-bit codes, f16 d, f16 dmin}.
void dequant_q2_k(const uint8_t* b, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i, b += 84) {
    const uint8_t* scales = b;
    const uint8_t* q = b + 16;
    const float d = fp16_to_fp32(load_u16(b + 80)), dmin = fp16_to_fp32(load_u16(b + 82));
    int is = 0;
    for (int n = 0; n < QK_K; n += 128, q += 32)
      for (int shift = 0; shift < 8; shift += 2)
        for (int half = 0; half < 2; ++half) {
          const uint8_t sc = scales[is++];
          const float dl = d * (sc & 0xF), ml = dmin * (sc >> 4);
          for (int l = 0; l < 16; ++l) *y++ = dl * ((q[l + 16 * half] >> shift) & 3) - ml;
        }
  }
}

// Q3_K: {32 bytes of high bits (hmask), 64 bytes of 2-bit codes, 12 bytes of 16 packed 6-bit scales, f16 d}:
// x = d * (scale - 32) * (low2 - (high bit clear ? 4 : 0)).
void dequant_q3_k(const uint8_t* b, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i, b += 110) {
    const uint8_t* hm = b;
    const uint8_t* q = b + 32;
    const float d = fp16_to_fp32(load_u16(b + 108));
    uint32_t aux[4];
    std::memcpy(aux, b + 96, 12);
    const uint32_t tmp = aux[2], k1 = 0x03030303, k2 = 0x0f0f0f0f;
    aux[2] = ((aux[0] >> 4) & k2) | (((tmp >> 4) & k1) << 4);
    aux[3] = ((aux[1] >> 4) & k2) | (((tmp >> 6) & k1) << 4);
    aux[0] = (aux[0] & k2) | (((tmp >> 0) & k1) << 4);
    aux[1] = (aux[1] & k2) | (((tmp >> 2) & k1) << 4);
    int8_t scales[16];
    std::memcpy(scales, aux, 16);
    int is = 0;
    uint8_t m = 1;
    for (int n = 0; n < QK_K; n += 128, q += 32)
      for (int shift = 0; shift < 8; shift += 2, m = static_cast<uint8_t>(m << 1))
        for (int half = 0; half < 2; ++half) {
          const float dl = d * (scales[is++] - 32);
          for (int l = 0; l < 16; ++l) {
            const int idx = l + 16 * half;
            *y++ = dl * (((q[idx] >> shift) & 3) - ((hm[idx] & m) ? 0 : 4));
          }
        }
  }
}

// IQ4_NL / IQ4_XS: 4-bit indices into a fixed non-linear table.
constexpr int8_t kIq4Values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

// IQ4_NL: {f16 d, 16 bytes of indices} per 32.
void dequant_iq4_nl(const uint8_t* b, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i, b += 18, y += 32) {
    const float d = fp16_to_fp32(load_u16(b));
    for (int j = 0; j < 16; ++j) {
      y[j] = d * kIq4Values[b[2 + j] & 0xF];
      y[j + 16] = d * kIq4Values[b[2 + j] >> 4];
    }
  }
}

// IQ4_XS: {f16 d, u16 high scale bits, 4 bytes of low scale nibbles, 128 bytes of indices} per 256:
// eight sub-blocks of 32 with 6-bit scales (ls - 32).
void dequant_iq4_xs(const uint8_t* b, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i, b += 136) {
    const float d = fp16_to_fp32(load_u16(b));
    const uint16_t scales_h = load_u16(b + 2);
    const uint8_t* scales_l = b + 4;
    const uint8_t* qs = b + 8;
    for (int ib = 0; ib < 8; ++ib, qs += 16, y += 32) {
      const int ls = ((scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((scales_h >> (2 * ib)) & 3) << 4);
      const float dl = d * (ls - 32);
      for (int j = 0; j < 16; ++j) {
        y[j] = dl * kIq4Values[qs[j] & 0xF];
        y[j + 16] = dl * kIq4Values[qs[j] >> 4];
      }
    }
  }
}

void quant_q8_0(const float* x, BlockQ8_0* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK8_0) {
    float amax = 0;
    for (int j = 0; j < QK8_0; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
    b[i].d = fp32_to_fp16(d);
    for (int j = 0; j < QK8_0; ++j) b[i].qs[j] = static_cast<int8_t>(std::lround(x[j] * id));
  }
}

void quant_q4_0(const float* x, BlockQ4_0* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK4_0) {
    float amax = 0, max = 0;  // max keeps the sign of the largest-magnitude value, as ggml does
    for (int j = 0; j < QK4_0; ++j)
      if (std::fabs(x[j]) > amax) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    const float d = max / -8.0f, id = d != 0 ? 1.0f / d : 0.0f;
    b[i].d = fp32_to_fp16(d);
    for (int j = 0; j < QK4_0 / 2; ++j) {
      const int q0 = std::min(15, static_cast<int>(x[j] * id + 8.5f));
      const int q1 = std::min(15, static_cast<int>(x[j + 16] * id + 8.5f));
      b[i].qs[j] = static_cast<uint8_t>(std::max(0, q0) | (std::max(0, q1) << 4));
    }
  }
}

// A straightforward min/max quantizer of one 256-element super-block into 8 sub-blocks of 32 with
// 6-bit scales and mins and `bits`-bit codes (Q4_K, Q5_K; ggml searches scales more carefully, the
// format is the same). Writes d, dmin, the 12 packed scale bytes and the codes (0 .. 2^bits - 1).
void quant_k_minmax(const float* x, int bits, uint16_t* d_out, uint16_t* dmin_out, uint8_t* scales12, uint8_t* codes) {
  const float levels = static_cast<float>((1 << bits) - 1);
  float scale[8], minv[8];
  for (int j = 0; j < 8; ++j) {
    const float* s = x + 32 * j;
    float lo = s[0], hi = s[0];
    for (int l = 1; l < 32; ++l) {
      lo = std::min(lo, s[l]);
      hi = std::max(hi, s[l]);
    }
    lo = std::min(lo, 0.0f);
    minv[j] = -lo;
    scale[j] = (hi - lo) / levels;
  }
  const float max_scale = *std::max_element(scale, scale + 8);
  const float max_min = *std::max_element(minv, minv + 8);
  *d_out = fp32_to_fp16(max_scale / 63.0f);
  *dmin_out = fp32_to_fp16(max_min / 63.0f);
  const float dq = fp16_to_fp32(*d_out), dminq = fp16_to_fp32(*dmin_out);
  uint8_t sc[8], mn[8];
  for (int j = 0; j < 8; ++j) {
    sc[j] = static_cast<uint8_t>(std::clamp<long>(dq > 0 ? std::lround(scale[j] / dq) : 0, 0, 63));
    mn[j] = static_cast<uint8_t>(std::clamp<long>(dminq > 0 ? std::lround(minv[j] / dminq) : 0, 0, 63));
  }
  std::memset(scales12, 0, 12);
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      scales12[j] = sc[j];
      scales12[j + 4] = mn[j];
    } else {
      scales12[j + 4] = static_cast<uint8_t>((sc[j] & 0xF) | ((mn[j] & 0xF) << 4));
      scales12[j - 4] |= static_cast<uint8_t>((sc[j] >> 4) << 6);
      scales12[j] |= static_cast<uint8_t>((mn[j] >> 4) << 6);
    }
  }
  const int top = (1 << bits) - 1;
  for (int j = 0; j < 8; ++j) {
    const float ds = dq * sc[j], m = dminq * mn[j];
    for (int l = 0; l < 32; ++l)
      codes[32 * j + l] = static_cast<uint8_t>(
          ds > 0 ? std::clamp<int>(static_cast<int>(std::lround((x[32 * j + l] + m) / ds)), 0, top) : 0);
  }
}

void quant_q4_k(const float* x, BlockQ4_K* b, int64_t nb) {
  uint8_t codes[QK_K];
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    quant_k_minmax(x, 4, &b[i].d, &b[i].dmin, b[i].scales, codes);
    for (int j = 0; j < 8; j += 2)
      for (int l = 0; l < 32; ++l)
        b[i].qs[(j / 2) * 32 + l] = static_cast<uint8_t>(codes[32 * j + l] | (codes[32 * (j + 1) + l] << 4));
  }
}

void quant_q5_k(const float* x, BlockQ5_K* b, int64_t nb) {
  uint8_t codes[QK_K];
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    quant_k_minmax(x, 5, &b[i].d, &b[i].dmin, b[i].scales, codes);
    std::memset(b[i].qh, 0, sizeof(b[i].qh));
    for (int j = 0; j < 8; j += 2)
      for (int l = 0; l < 32; ++l)
        b[i].qs[(j / 2) * 32 + l] =
            static_cast<uint8_t>((codes[32 * j + l] & 0xF) | ((codes[32 * (j + 1) + l] & 0xF) << 4));
    for (int j = 0; j < 8; ++j)
      for (int l = 0; l < 32; ++l) b[i].qh[l] |= static_cast<uint8_t>((codes[32 * j + l] >> 4) << j);
  }
}

// Q5_0 (as ggml's reference: the signed extreme maps to -16) and Q5_1 (min/max), 32 per block.
void quant_q5(const float* x, uint8_t* b, int64_t nb, bool with_min) {
  const int bytes = with_min ? 24 : 22, h = with_min ? 4 : 2;
  for (int64_t i = 0; i < nb; ++i, x += 32, b += bytes) {
    float d, m = 0;
    if (with_min) {
      float lo = x[0], hi = x[0];
      for (int j = 1; j < 32; ++j) {
        lo = std::min(lo, x[j]);
        hi = std::max(hi, x[j]);
      }
      d = (hi - lo) / 31.0f;
      m = lo;
    } else {
      float amax = 0, max = 0;
      for (int j = 0; j < 32; ++j)
        if (std::fabs(x[j]) > amax) {
          amax = std::fabs(x[j]);
          max = x[j];
        }
      d = max / -16.0f;
    }
    const float id = d != 0 ? 1.0f / d : 0.0f;
    const uint16_t dh = fp32_to_fp16(d), mh = fp32_to_fp16(m);
    std::memcpy(b, &dh, 2);
    if (with_min) std::memcpy(b + 2, &mh, 2);
    uint32_t qh = 0;
    uint8_t* qs = b + h + 4;
    for (int j = 0; j < 16; ++j) {
      const auto code = [&](float v) {
        const float t = with_min ? (v - m) * id + 0.5f : v * id + 16.5f;
        return std::clamp(static_cast<int>(t), 0, 31);
      };
      const int q0 = code(x[j]), q1 = code(x[j + 16]);
      qs[j] = static_cast<uint8_t>((q0 & 0xF) | ((q1 & 0xF) << 4));
      qh |= static_cast<uint32_t>((q0 >> 4) & 1) << j;
      qh |= static_cast<uint32_t>((q1 >> 4) & 1) << (j + 16);
    }
    std::memcpy(b + h, &qh, 4);
  }
}

void quant_q6_k(const float* x, BlockQ6_K* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    float scale[16];
    for (int j = 0; j < 16; ++j) {
      float amax = 0;
      for (int l = 0; l < 16; ++l) amax = std::max(amax, std::fabs(x[16 * j + l]));
      scale[j] = amax / 31.0f;
    }
    const float d = *std::max_element(scale, scale + 16) / 127.0f;
    b[i].d = fp32_to_fp16(d);
    const float dq = fp16_to_fp32(b[i].d);
    int q[QK_K];
    for (int j = 0; j < 16; ++j) {
      b[i].scales[j] = static_cast<int8_t>(dq > 0 ? std::clamp<long>(std::lround(scale[j] / dq), 0, 127) : 0);
      const float ds = dq * b[i].scales[j];
      for (int l = 0; l < 16; ++l) {
        const int v = ds > 0 ? static_cast<int>(std::lround(x[16 * j + l] / ds)) : 0;
        q[16 * j + l] = std::clamp(v, -32, 31) + 32;
      }
    }
    for (int n = 0; n < 2; ++n) {
      uint8_t* ql = b[i].ql + 64 * n;
      uint8_t* qh = b[i].qh + 32 * n;
      const int* qq = q + 128 * n;
      for (int l = 0; l < 32; ++l) {
        ql[l] = static_cast<uint8_t>((qq[l] & 0xF) | ((qq[l + 64] & 0xF) << 4));
        ql[l + 32] = static_cast<uint8_t>((qq[l + 32] & 0xF) | ((qq[l + 96] & 0xF) << 4));
        qh[l] = static_cast<uint8_t>((qq[l] >> 4) | ((qq[l + 32] >> 4) << 2) | ((qq[l + 64] >> 4) << 4) |
                                     ((qq[l + 96] >> 4) << 6));
      }
    }
  }
}

}  // namespace

void quantize_activation_q8(const float* x, int64_t n, int8_t* q, float* d) {
  for (int64_t b = 0; b < n / QK8_0; ++b, x += QK8_0, q += QK8_0) {
    float amax = 0;
    for (int j = 0; j < QK8_0; ++j) amax = std::max(amax, std::fabs(x[j]));
    d[b] = amax / 127.0f;
    const float id = amax > 0 ? 127.0f / amax : 0.0f;
    for (int j = 0; j < QK8_0; ++j) q[j] = static_cast<int8_t>(std::lrintf(x[j] * id));
  }
}

void dequantize_row(DType t, const void* src, float* dst, int64_t n) {
  const DTypeInfo& info = dtype_info(t);
  KV_CHECK(n % info.block_elems == 0, "row length {} not a multiple of {} block size", n, info.name);
  const int64_t nb = n / info.block_elems;
  switch (t) {
    case DType::F32:
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      return;
    case DType::F16: {
      const auto* h = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(h[i]);
      return;
    }
    case DType::BF16: {
      const auto* h = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(h[i]);
      return;
    }
    case DType::Q8_0: {
      const auto* b = static_cast<const BlockQ8_0*>(src);
      for (int64_t i = 0; i < nb; ++i) {
        const float d = fp16_to_fp32(b[i].d);
        for (int j = 0; j < QK8_0; ++j) dst[i * QK8_0 + j] = d * b[i].qs[j];
      }
      return;
    }
    case DType::Q4_0: {
      const auto* b = static_cast<const BlockQ4_0*>(src);
      for (int64_t i = 0; i < nb; ++i) {
        const float d = fp16_to_fp32(b[i].d);
        for (int j = 0; j < QK4_0 / 2; ++j) {
          dst[i * QK4_0 + j] = d * ((b[i].qs[j] & 0xF) - 8);
          dst[i * QK4_0 + j + 16] = d * ((b[i].qs[j] >> 4) - 8);
        }
      }
      return;
    }
    case DType::Q4_K:
      dequant_q4_k(static_cast<const BlockQ4_K*>(src), nb, dst);
      return;
    case DType::Q5_K:
      dequant_q5_k(static_cast<const BlockQ5_K*>(src), nb, dst);
      return;
    case DType::Q6_K:
      dequant_q6_k(static_cast<const BlockQ6_K*>(src), nb, dst);
      return;
    case DType::Q4_1:
      return dequant_q4_1(static_cast<const uint8_t*>(src), nb, dst);
    case DType::Q5_0:
      return dequant_q5(static_cast<const uint8_t*>(src), nb, dst, false);
    case DType::Q5_1:
      return dequant_q5(static_cast<const uint8_t*>(src), nb, dst, true);
    case DType::Q2_K:
      return dequant_q2_k(static_cast<const uint8_t*>(src), nb, dst);
    case DType::Q3_K:
      return dequant_q3_k(static_cast<const uint8_t*>(src), nb, dst);
    case DType::IQ4_NL:
      return dequant_iq4_nl(static_cast<const uint8_t*>(src), nb, dst);
    case DType::IQ4_XS:
      return dequant_iq4_xs(static_cast<const uint8_t*>(src), nb, dst);
    default:
      fail("tensor type {} is not supported for computation", info.name);
  }
}

void quantize_row(DType t, const float* src, void* dst, int64_t n) {
  const DTypeInfo& info = dtype_info(t);
  KV_CHECK(n % info.block_elems == 0, "row length {} not a multiple of {} block size", n, info.name);
  const int64_t nb = n / info.block_elems;
  switch (t) {
    case DType::F32:
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      return;
    case DType::F16: {
      auto* h = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) h[i] = fp32_to_fp16(src[i]);
      return;
    }
    case DType::BF16: {
      auto* h = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) h[i] = fp32_to_bf16(src[i]);
      return;
    }
    case DType::Q8_0:
      quant_q8_0(src, static_cast<BlockQ8_0*>(dst), nb);
      return;
    case DType::Q4_0:
      quant_q4_0(src, static_cast<BlockQ4_0*>(dst), nb);
      return;
    case DType::Q4_K:
      quant_q4_k(src, static_cast<BlockQ4_K*>(dst), nb);
      return;
    case DType::Q6_K:
      quant_q6_k(src, static_cast<BlockQ6_K*>(dst), nb);
      return;
    case DType::Q5_K:
      quant_q5_k(src, static_cast<BlockQ5_K*>(dst), nb);
      return;
    case DType::Q5_0:
      quant_q5(src, static_cast<uint8_t*>(dst), nb, false);
      return;
    case DType::Q5_1:
      quant_q5(src, static_cast<uint8_t*>(dst), nb, true);
      return;
    default:
      fail("quantization to {} is not supported", info.name);
  }
}

}  // namespace kvwise
