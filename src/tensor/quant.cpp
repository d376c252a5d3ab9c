#include "tensor/quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "base/error.h"
#include "tensor/fp16.h"
#include "tensor/quant_blocks.h"

namespace kvwise {

namespace {

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

// A straightforward min/max Q4_K quantizer (ggml searches scales more carefully; the format is the same).
void quant_q4_k(const float* x, BlockQ4_K* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
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
      scale[j] = (hi - lo) / 15.0f;
    }
    const float max_scale = *std::max_element(scale, scale + 8);
    const float max_min = *std::max_element(minv, minv + 8);
    const float d = max_scale / 63.0f, dmin = max_min / 63.0f;
    b[i].d = fp32_to_fp16(d);
    b[i].dmin = fp32_to_fp16(dmin);
    const float dq = fp16_to_fp32(b[i].d), dminq = fp16_to_fp32(b[i].dmin);
    uint8_t sc[8], mn[8];
    for (int j = 0; j < 8; ++j) {
      sc[j] = static_cast<uint8_t>(std::clamp<long>(dq > 0 ? std::lround(scale[j] / dq) : 0, 0, 63));
      mn[j] = static_cast<uint8_t>(std::clamp<long>(dminq > 0 ? std::lround(minv[j] / dminq) : 0, 0, 63));
    }
    std::memset(b[i].scales, 0, 12);
    for (int j = 0; j < 8; ++j) {
      if (j < 4) {
        b[i].scales[j] = sc[j];
        b[i].scales[j + 4] = mn[j];
      } else {
        b[i].scales[j + 4] = static_cast<uint8_t>((sc[j] & 0xF) | ((mn[j] & 0xF) << 4));
        b[i].scales[j - 4] |= static_cast<uint8_t>((sc[j] >> 4) << 6);
        b[i].scales[j] |= static_cast<uint8_t>((mn[j] >> 4) << 6);
      }
    }
    for (int j = 0; j < 8; ++j) {
      const float ds = dq * sc[j], m = dminq * mn[j];
      for (int l = 0; l < 32; ++l) {
        const int q = ds > 0 ? std::clamp<int>(static_cast<int>(std::lround((x[32 * j + l] + m) / ds)), 0, 15) : 0;
        uint8_t& dst = b[i].qs[(j / 2) * 32 + l];
        if (j % 2 == 0)
          dst = static_cast<uint8_t>(q);
        else
          dst |= static_cast<uint8_t>(q << 4);
      }
    }
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
    default:
      fail("quantization to {} is not supported", info.name);
  }
}

}  // namespace kvwise
