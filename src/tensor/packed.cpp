#include "tensor/packed.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "base/error.h"
#include "tensor/fp16.h"
#include "tensor/kernels_packed.h"
#include "tensor/packed_layout.h"

namespace kvwise {

namespace {

// The 6-bit codes (0..63) of one Q6_K block, in element order.
void q6k_codes(const BlockQ6_K& b, uint8_t* q) {
  for (int half = 0; half < 2; ++half) {
    const uint8_t* ql = b.ql + 64 * half;
    const uint8_t* qh = b.qh + 32 * half;
    uint8_t* o = q + 128 * half;
    for (int l = 0; l < 32; ++l) {
      o[l] = static_cast<uint8_t>((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4));
      o[l + 32] = static_cast<uint8_t>((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4));
      o[l + 64] = static_cast<uint8_t>((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
      o[l + 96] = static_cast<uint8_t>((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4));
    }
  }
}

void pack_k4(const uint8_t* const rows[8], size_t block_offset_bytes, PackedQ4_K& p, bool q5, uint8_t* qh_out) {
  for (int r = 0; r < 8; ++r) {
    const uint8_t* src = rows[r] + block_offset_bytes;
    uint16_t d, dmin;
    std::memcpy(&d, src, 2);
    std::memcpy(&dmin, src + 2, 2);
    const uint8_t* scales = src + 4;
    const uint8_t* qh = q5 ? src + 16 : nullptr;
    const uint8_t* qs = q5 ? src + 48 : src + 16;
    p.d[r] = d;
    p.dmin[r] = dmin;
    for (int j = 0; j < 8; ++j) {
      int sc, mn;
      q4k_scale_min(j, scales, &sc, &mn);
      p.sc[j][r] = static_cast<uint8_t>(sc);
      p.mn[j][r] = static_cast<uint8_t>(mn);
    }
    for (int pp = 0; pp < 4; ++pp)
      for (int c = 0; c < 8; ++c) std::memcpy(&p.qs[pp * 256 + c * 32 + r * 4], qs + 32 * pp + 4 * c, 4);
    if (q5)
      for (int c = 0; c < 8; ++c) std::memcpy(&qh_out[c * 32 + r * 4], qh + 4 * c, 4);
  }
}

template <typename Block>
const Block& block_at(const uint8_t* row, int64_t b) {
  return reinterpret_cast<const Block*>(row)[b];
}

// Q4_0 / Q8_0: each row's f16 scale, and its quant bytes 4 at a time, row after row per chunk.
template <typename Block, typename Packed>
void pack_scaled_blocks(const uint8_t* const rows[8], int64_t blocks, uint8_t* out) {
  constexpr int kChunks = sizeof(Block::qs) / 4;
  for (int64_t b = 0; b < blocks; ++b) {
    auto& p = reinterpret_cast<Packed*>(out)[b];
    for (int r = 0; r < 8; ++r) {
      const Block& s = block_at<Block>(rows[r], b);
      p.d[r] = s.d;
      for (int c = 0; c < kChunks; ++c) std::memcpy(&p.qs[c * 32 + r * 4], s.qs + 4 * c, 4);
    }
  }
}

int64_t isum_dot(const uint8_t* w_codes, const int8_t* x, int n) {
  int64_t s = 0;
  for (int i = 0; i < n; ++i) s += static_cast<int64_t>(w_codes[i]) * x[i];
  return s;
}

}  // namespace

void QuantizedRows::resize(int64_t m, int64_t n, int block) {
  KV_CHECK(n % block == 0 && n % 16 == 0, "activation of {} values is not a multiple of {}", n, block);
  m_ = m;
  n_ = n;
  block_ = block;
  q_.resize(static_cast<size_t>(m * n));
  d_.resize(static_cast<size_t>(m * (n / block)));
  sum16_.resize(static_cast<size_t>(m * (n / 16)));
  dsum_.resize(d_.size());
}

void QuantizedRows::fill_dsum(int64_t i) {
  const int64_t nb = n_ / block_, per = block_ / 16;
  const int16_t* s = sum16_.data() + i * (n_ / 16);
  for (int64_t b = 0; b < nb; ++b) {
    int total = 0;
    for (int64_t g = 0; g < per; ++g) total += s[b * per + g];
    dsum_[static_cast<size_t>(i * nb + b)] = d_[static_cast<size_t>(i * nb + b)] * static_cast<float>(total);
  }
}

void quantize_row_q8_reference(const float* x, int64_t n, int block, int8_t* q, float* d, int16_t* sum16) {
  for (int64_t b = 0; b < n / block; ++b) {
    float amax = 0;
    for (int j = 0; j < block; ++j) amax = std::max(amax, std::fabs(x[b * block + j]));
    d[b] = amax / 127.0f;
    const float id = amax > 0 ? 127.0f / amax : 0.0f;
    for (int j = 0; j < block; ++j) q[b * block + j] = static_cast<int8_t>(std::nearbyint(x[b * block + j] * id));
  }
  for (int64_t g = 0; g < n / 16; ++g) {
    int s = 0;
    for (int j = 0; j < 16; ++j) s += q[g * 16 + j];
    sum16[g] = static_cast<int16_t>(s);
  }
}

QuantizedRow QuantizedRows::row(int64_t i) const {
  return QuantizedRow{q_.data() + i * n_,
                      d_.data() + i * (n_ / block_),
                      sum16_.data() + i * (n_ / 16),
                      dsum_.data() + i * (n_ / block_),
                      n_,
                      block_};
}

bool packable(DType t, int64_t rows, int64_t cols) {
  if (rows <= 0 || rows % kPackRows != 0) return false;
  switch (t) {
    case DType::Q4_0:
    case DType::Q8_0:
      return cols % 32 == 0;
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K:
      return cols % QK_K == 0;
    default:
      return false;
  }
}

int activation_block(DType t) {
  return t == DType::Q4_0 || t == DType::Q8_0 ? 32 : QK_K;
}

size_t packed_group_bytes(DType t, int64_t cols) {
  switch (t) {
    case DType::Q4_0:
      return sizeof(PackedQ4_0) * static_cast<size_t>(cols / 32);
    case DType::Q8_0:
      return sizeof(PackedQ8_0) * static_cast<size_t>(cols / 32);
    case DType::Q4_K:
      return sizeof(PackedQ4_K) * static_cast<size_t>(cols / QK_K);
    case DType::Q5_K:
      return sizeof(PackedQ5_K) * static_cast<size_t>(cols / QK_K);
    case DType::Q6_K:
      return sizeof(PackedQ6_K) * static_cast<size_t>(cols / QK_K);
    default:
      fail("no packed layout for {}", dtype_name(t));
  }
}

void pack_rows(DType t, const uint8_t* src, size_t rb, int64_t rows, int64_t cols, uint8_t* dst) {
  KV_CHECK(packable(t, rows, cols), "a {}x{} {} matrix cannot be packed", rows, cols, dtype_name(t));
  const size_t gb = packed_group_bytes(t, cols);
  for (int64_t g = 0; g < rows / kPackRows; ++g) {
    const uint8_t* r8[8];
    for (int r = 0; r < 8; ++r) r8[r] = src + static_cast<size_t>(g * kPackRows + r) * rb;
    uint8_t* out = dst + static_cast<size_t>(g) * gb;
    switch (t) {
      case DType::Q4_0:
        pack_scaled_blocks<BlockQ4_0, PackedQ4_0>(r8, cols / 32, out);
        break;
      case DType::Q8_0:
        pack_scaled_blocks<BlockQ8_0, PackedQ8_0>(r8, cols / 32, out);
        break;
      case DType::Q4_K:
        for (int64_t b = 0; b < cols / QK_K; ++b)
          pack_k4(r8, static_cast<size_t>(b) * sizeof(BlockQ4_K), reinterpret_cast<PackedQ4_K*>(out)[b], false,
                  nullptr);
        break;
      case DType::Q5_K:
        for (int64_t b = 0; b < cols / QK_K; ++b) {
          auto& p = reinterpret_cast<PackedQ5_K*>(out)[b];
          pack_k4(r8, static_cast<size_t>(b) * sizeof(BlockQ5_K), p.lo, true, p.qh);
        }
        break;
      case DType::Q6_K:
        for (int64_t b = 0; b < cols / QK_K; ++b) {
          auto& p = reinterpret_cast<PackedQ6_K*>(out)[b];
          std::memset(p.qh, 0, sizeof(p.qh));
          for (int r = 0; r < 8; ++r) {
            const BlockQ6_K& s = block_at<BlockQ6_K>(r8[r], b);
            uint8_t q[QK_K];
            q6k_codes(s, q);
            p.d[r] = s.d;
            for (int g2 = 0; g2 < 16; ++g2) p.sc[g2][r] = s.scales[g2];
            for (int c = 0; c < 32; ++c)
              for (int k = 0; k < 4; ++k)
                p.ql[c * 32 + r * 4 + k] = static_cast<uint8_t>((q[4 * c + k] & 15) | ((q[128 + 4 * c + k] & 15) << 4));
            for (int c = 0; c < 16; ++c)
              for (int k = 0; k < 4; ++k)
                for (int i = 0; i < 4; ++i)
                  p.qh[c * 32 + r * 4 + k] |= static_cast<uint8_t>((q[64 * i + 4 * c + k] >> 4) << (2 * i));
          }
        }
        break;
      default:
        fail("no packed layout for {}", dtype_name(t));
    }
  }
}

namespace {

// The codes and the per-element (scale, offset) of row r of a packed K-quant block, in element order:
// value = d * sc[e / 32] * code[e] - dmin * mn[e / 32].
void k4_codes(const PackedQ4_K& p, const uint8_t* qh5, int r, uint8_t* code) {
  for (int pp = 0; pp < 4; ++pp)
    for (int c = 0; c < 8; ++c)
      for (int k = 0; k < 4; ++k) {
        const uint8_t byte = p.qs[pp * 256 + c * 32 + r * 4 + k];
        code[64 * pp + 4 * c + k] = byte & 15;
        code[64 * pp + 32 + 4 * c + k] = byte >> 4;
      }
  if (qh5 != nullptr)
    for (int c = 0; c < 8; ++c)
      for (int k = 0; k < 4; ++k)
        for (int j = 0; j < 8; ++j)
          if ((qh5[c * 32 + r * 4 + k] >> j) & 1) code[32 * j + 4 * c + k] += 16;
}

// Super-block b of a packed Q4_K or Q5_K group; *qh gets Q5_K's fifth bits (nullptr for Q4_K).
const PackedQ4_K* k45_block(DType t, const uint8_t* group, int64_t b, const uint8_t** qh) {
  if (t != DType::Q5_K) return &reinterpret_cast<const PackedQ4_K*>(group)[b];
  const auto& p5 = reinterpret_cast<const PackedQ5_K*>(group)[b];
  *qh = p5.qh;
  return &p5.lo;
}

void q6_codes_packed(const PackedQ6_K& p, int r, uint8_t* code) {
  for (int c = 0; c < 32; ++c)
    for (int k = 0; k < 4; ++k) {
      const uint8_t byte = p.ql[c * 32 + r * 4 + k];
      code[4 * c + k] = byte & 15;
      code[128 + 4 * c + k] = byte >> 4;
    }
  for (int c = 0; c < 16; ++c)
    for (int k = 0; k < 4; ++k)
      for (int i = 0; i < 4; ++i)
        code[64 * i + 4 * c + k] |= static_cast<uint8_t>(((p.qh[c * 32 + r * 4 + k] >> (2 * i)) & 3) << 4);
}

void q4_0_codes_packed(const PackedQ4_0& p, int r, uint8_t* code) {
  for (int c = 0; c < 4; ++c)
    for (int k = 0; k < 4; ++k) {
      const uint8_t byte = p.qs[c * 32 + r * 4 + k];
      code[4 * c + k] = byte & 15;
      code[16 + 4 * c + k] = byte >> 4;
    }
}

}  // namespace

void unpack_group(DType t, const uint8_t* group, int64_t cols, float* dst) {
  uint8_t code[QK_K];
  for (int r = 0; r < 8; ++r) {
    float* y = dst + r * cols;
    switch (t) {
      case DType::Q4_0:
        for (int64_t b = 0; b < cols / 32; ++b) {
          const auto& p = reinterpret_cast<const PackedQ4_0*>(group)[b];
          q4_0_codes_packed(p, r, code);
          const float d = fp16_to_fp32(p.d[r]);
          for (int e = 0; e < 32; ++e) y[b * 32 + e] = d * (code[e] - 8);
        }
        break;
      case DType::Q8_0:
        for (int64_t b = 0; b < cols / 32; ++b) {
          const auto& p = reinterpret_cast<const PackedQ8_0*>(group)[b];
          const float d = fp16_to_fp32(p.d[r]);
          for (int c = 0; c < 8; ++c)
            for (int k = 0; k < 4; ++k) y[b * 32 + 4 * c + k] = d * p.qs[c * 32 + r * 4 + k];
        }
        break;
      case DType::Q4_K:
      case DType::Q5_K:
        for (int64_t b = 0; b < cols / QK_K; ++b) {
          const uint8_t* qh = nullptr;
          const PackedQ4_K* p = k45_block(t, group, b, &qh);
          k4_codes(*p, qh, r, code);
          const float d = fp16_to_fp32(p->d[r]), dmin = fp16_to_fp32(p->dmin[r]);
          for (int e = 0; e < QK_K; ++e) y[b * QK_K + e] = d * p->sc[e / 32][r] * code[e] - dmin * p->mn[e / 32][r];
        }
        break;
      case DType::Q6_K:
        for (int64_t b = 0; b < cols / QK_K; ++b) {
          const auto& p = reinterpret_cast<const PackedQ6_K*>(group)[b];
          q6_codes_packed(p, r, code);
          const float d = fp16_to_fp32(p.d[r]);
          for (int e = 0; e < QK_K; ++e) y[b * QK_K + e] = d * p.sc[e / 16][r] * (code[e] - 32);
        }
        break;
      default:
        fail("no packed layout for {}", dtype_name(t));
    }
  }
}

void gemv_packed_reference(DType t, const uint8_t* packed, int64_t cols, const QuantizedRow& x, float* y, int64_t g0,
                           int64_t g1) {
  KV_CHECK(x.n == cols && x.block == activation_block(t), "activation does not match the packed {} matrix",
           dtype_name(t));
  const size_t gb = packed_group_bytes(t, cols);
  uint8_t code[QK_K];
  for (int64_t g = g0; g < g1; ++g) {
    const uint8_t* group = packed + static_cast<size_t>(g) * gb;
    for (int r = 0; r < 8; ++r) {
      double acc = 0;
      switch (t) {
        case DType::Q4_0:
          for (int64_t b = 0; b < cols / 32; ++b) {
            const auto& p = reinterpret_cast<const PackedQ4_0*>(group)[b];
            q4_0_codes_packed(p, r, code);
            const int64_t s = isum_dot(code, x.q + b * 32, 32) - 8 * (x.sum16[2 * b] + x.sum16[2 * b + 1]);
            acc += static_cast<double>(fp16_to_fp32(p.d[r])) * x.d[b] * static_cast<double>(s);
          }
          break;
        case DType::Q8_0:
          for (int64_t b = 0; b < cols / 32; ++b) {
            const auto& p = reinterpret_cast<const PackedQ8_0*>(group)[b];
            int64_t s = 0;
            for (int c = 0; c < 8; ++c)
              for (int k = 0; k < 4; ++k) s += p.qs[c * 32 + r * 4 + k] * x.q[b * 32 + 4 * c + k];
            acc += static_cast<double>(fp16_to_fp32(p.d[r])) * x.d[b] * static_cast<double>(s);
          }
          break;
        case DType::Q4_K:
        case DType::Q5_K:
          for (int64_t b = 0; b < cols / QK_K; ++b) {
            const uint8_t* qh = nullptr;
            const PackedQ4_K* p = k45_block(t, group, b, &qh);
            k4_codes(*p, qh, r, code);
            int64_t s = 0, m = 0;
            for (int j = 0; j < 8; ++j) {
              s += p->sc[j][r] * isum_dot(code + 32 * j, x.q + b * QK_K + 32 * j, 32);
              m += p->mn[j][r] * (x.sum16[b * 16 + 2 * j] + x.sum16[b * 16 + 2 * j + 1]);
            }
            acc +=
                static_cast<double>(x.d[b]) * (static_cast<double>(fp16_to_fp32(p->d[r])) * static_cast<double>(s) -
                                               static_cast<double>(fp16_to_fp32(p->dmin[r])) * static_cast<double>(m));
          }
          break;
        case DType::Q6_K:
          for (int64_t b = 0; b < cols / QK_K; ++b) {
            const auto& p = reinterpret_cast<const PackedQ6_K*>(group)[b];
            q6_codes_packed(p, r, code);
            int64_t s = 0;
            for (int g16 = 0; g16 < 16; ++g16)
              s += p.sc[g16][r] *
                   (isum_dot(code + 16 * g16, x.q + b * QK_K + 16 * g16, 16) - 32 * x.sum16[b * 16 + g16]);
            acc += static_cast<double>(fp16_to_fp32(p.d[r])) * x.d[b] * static_cast<double>(s);
          }
          break;
        default:
          fail("no packed layout for {}", dtype_name(t));
      }
      y[(g - g0) * 8 + r] = static_cast<float>(acc);
    }
  }
}

void gemm_packed_scalar(DType t, const uint8_t* packed, int64_t cols, const QuantizedRow* x, int nx, float* y,
                        int64_t ldy, int64_t g0, int64_t g1) {
  for (int i = 0; i < nx; ++i) gemv_packed_reference(t, packed, cols, x[i], y + i * ldy, g0, g1);
}

}  // namespace kvwise
