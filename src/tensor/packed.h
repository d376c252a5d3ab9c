// Quantized weights repacked at load time into groups of 8 rows, interleaved 4 bytes at a time, and
// activations quantized to int8 once per product. One 256-bit unsigned x signed byte multiply-add
// (maddubs) then computes 4 products for each of the 8 rows against 4 broadcast activations, so each
// row's integer sum ends in its own 32-bit lane, where it is scaled and accumulated with no horizontal
// reduction (the layout idea of ggml's "repack" kernels; the code and exact layout are kvwise's own).
//
// Layouts per group of 8 rows (r = row in the group, k = byte in a 4-byte chunk); every one keeps the
// source type's bits and scales, so results equal the unpacked definition up to float rounding:
//   Q4_0: per 32 columns {f16 d[8]; u8 qs[128]}, qs[c*32 + r*4 + k] = row r's qs[4c + k] (c < 4): the low
//         nibble is element 4c + k, the high nibble element 16 + 4c + k.
//   Q8_0: per 32 columns {f16 d[8]; i8 qs[256]}, qs[c*32 + r*4 + k] = element 4c + k of row r (c < 8).
//   Q4_K: per 256 columns {f16 d[8], dmin[8]; u8 sc[8 sub][8 rows], mn[8][8]; u8 qs[1024]},
//         qs[p*256 + c*32 + r*4 + k] = row r's qs[32p + 4c + k] (p < 4, c < 8): the low nibble is element
//         64p + 4c + k (sub-block 2p), the high nibble element 64p + 32 + 4c + k (sub-block 2p + 1).
//   Q5_K: Q4_K's layout followed by u8 qh[256], qh[c*32 + r*4 + k] = row r's qh[4c + k]: bit j is the
//         fifth bit of element 32j + 4c + k.
//   Q6_K: per 256 columns {f16 d[8]; i8 sc[16 groups][8 rows]; u8 ql[1024]; u8 qh[512]} with q the 6-bit
//         code (0..63, value = d * sc * (q - 32)): ql[c*32 + r*4 + k] holds q[4c + k] & 15 in its low and
//         q[128 + 4c + k] & 15 in its high nibble (c < 32); qh[c*32 + r*4 + k] holds q[64i + 4c + k] >> 4 in
//         bits 2i, 2i + 1 (c < 16, i < 4).
// Thread-safety: pure functions over caller-owned memory.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "tensor/dtype.h"

namespace kvwise {

constexpr int kPackRows = 8;

// An input row quantized for integer dots: q[i] = round(x[i] / d[i / block]), with block = 32 for the
// Q4_0/Q8_0 weights and 256 for the K-quants (ggml's Q8_0 / Q8_K activations), and the sums of q over
// every 16 elements (for zero points and mins).
struct QuantizedRow {
  const int8_t* q = nullptr;
  const float* d = nullptr;
  const int16_t* sum16 = nullptr;
  const float* dsum = nullptr;  // per block: d * (sum of q), the float zero-point term of Q4_0
  int64_t n = 0;
  int block = 32;
};

// Owns the int8 copies of m input rows of n elements (reused across calls: not thread-safe; rows may
// be quantized from several threads once resize has run).
class QuantizedRows {
 public:
  void resize(int64_t m, int64_t n, int block);
  // Quantizes row i from x[0..n) with the given row quantizer (Kernels::quantize_row_q8).
  template <typename Quantizer>
  void quantize_row(int64_t i, const float* x, Quantizer&& quantizer) {
    quantizer(x, n_, block_, q_.data() + i * n_, d_.data() + i * (n_ / block_), sum16_.data() + i * (n_ / 16));
    fill_dsum(i);
  }
  QuantizedRow row(int64_t i) const;

 private:
  std::vector<int8_t> q_;
  std::vector<float> d_;
  std::vector<int16_t> sum16_;
  std::vector<float> dsum_;
  void fill_dsum(int64_t i);
  int64_t m_ = 0, n_ = 0;
  int block_ = 32;
};

// The scalar definition of the activation quantizer: per block d = max|x| / 127, q = rint(x / d)
// (round to nearest even, as the SIMD conversions do), sum16 = sums of q over 16 elements.
void quantize_row_q8_reference(const float* x, int64_t n, int block, int8_t* q, float* d, int16_t* sum16);

// True when t has a packed layout and the matrix fits it (rows a multiple of 8, columns of the block).
bool packable(DType t, int64_t rows, int64_t cols);
// The activation block the packed kernels of t use (32 or 256).
int activation_block(DType t);
// Bytes of one packed group of 8 rows of cols columns.
size_t packed_group_bytes(DType t, int64_t cols);
// Packs rows (a multiple of 8) rows of cols columns, row_bytes apart at src, into dst
// (rows / 8 * packed_group_bytes bytes).
void pack_rows(DType t, const uint8_t* src, size_t row_bytes, int64_t rows, int64_t cols, uint8_t* dst);
// The 8 x cols values of one packed group, row after row (the scalar definition of the layouts).
void unpack_group(DType t, const uint8_t* group, int64_t cols, float* dst);

// Scalar reference of the packed products: for every group g in [g0, g1) and row r of it,
// y[(g - g0) * 8 + r] = dot(row, x) computed with the integer sums the SIMD kernels use.
void gemv_packed_reference(DType t, const uint8_t* packed, int64_t cols, const QuantizedRow& x, float* y, int64_t g0,
                           int64_t g1);

}  // namespace kvwise
