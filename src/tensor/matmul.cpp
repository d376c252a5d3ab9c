#include "tensor/matmul.h"

#include <cblas.h>

#include <algorithm>
#include <vector>

#include "tensor/kernels.h"
#include "tensor/packed.h"

namespace kvwise {

namespace {
constexpr int64_t kSmallBatchBlockRows = 64;  // rows of W per block: 64 x 576 f16 = 72 KiB for SmolLM

// The input rows of a product with packed weights, quantized once per block size (32 for Q4_0/Q8_0,
// 256 for K-quants) and shared by every matrix multiplied with the same input (Q/K/V, gate/up).
class PackedInput {
 public:
  PackedInput(ThreadPool& pool, const float* x, int64_t m, int64_t cols) : pool_(pool), x_(x), m_(m), cols_(cols) {}

  const QuantizedRow* rows(int block) {
    const int i = block == 32 ? 0 : 1;
    Scratch& s = scratch()[i];
    if (!ready_[i]) {
      s.q.resize(m_, cols_, block);
      const Kernels& k = kernels();
      auto quantize = [&](size_t a, size_t b, int) {
        for (size_t i = a; i < b; ++i) s.q.quantize_row(static_cast<int64_t>(i), x_ + i * cols_, k.quantize_row_q8);
      };
      if (m_ >= kGemmMinRows)
        pool_.parallel_for(static_cast<size_t>(m_), quantize);
      else
        quantize(0, static_cast<size_t>(m_), 0);
      s.rows.resize(static_cast<size_t>(m_));
      for (int64_t r = 0; r < m_; ++r) s.rows[static_cast<size_t>(r)] = s.q.row(r);
      ready_[i] = true;
    }
    return s.rows.data();
  }

 private:
  // Per calling thread, one per block size (reused across products: no allocation per decode step).
  struct Scratch {
    QuantizedRows q;
    std::vector<QuantizedRow> rows;
  };
  static Scratch* scratch() {
    thread_local Scratch s[2];
    return s;
  }
  ThreadPool& pool_;
  const float* x_;
  int64_t m_, cols_;
  bool ready_[2] = {false, false};
};

// Rows [r0, r1) of a packed matrix, rounded to whole groups the same way for every range, so that
// adjacent ranges of a parallel loop cover each group exactly once.
void packed_rows(const Kernels& k, const WeightView& w, const QuantizedRow* xq, int64_t m, float* y, int64_t r0,
                 int64_t r1) {
  const int64_t g0 = (r0 + kPackRows - 1) / kPackRows, g1 = (r1 + kPackRows - 1) / kPackRows;
  if (g0 < g1) k.gemm_packed(w.type, w.packed, w.cols, xq, static_cast<int>(m), y + g0 * kPackRows, w.rows, g0, g1);
}

}  // namespace

void set_blas_threads(int n) {
  openblas_set_num_threads(std::max(1, n));
}

void matmul(ThreadPool& pool, const WeightView& w, const float* x, int64_t m, float* y) {
  const Kernels& k = kernels();
  if (w.packed != nullptr) {
    PackedInput input(pool, x, m, w.cols);
    const QuantizedRow* xq = input.rows(activation_block(w.type));
    pool.parallel_for(static_cast<size_t>(w.rows / kPackRows), [&](size_t a, size_t b, int) {
      packed_rows(k, w, xq, m, y, static_cast<int64_t>(a) * kPackRows, static_cast<int64_t>(b) * kPackRows);
    });
    return;
  }
  if (m < kGemmMinRows) {
    pool.parallel_for(static_cast<size_t>(w.rows), [&](size_t a, size_t b, int) {
      // A few rows of x share each block of W while it is in cache (a speculative decode step or a
      // small batch reads the weights once, not once per row).
      for (int64_t r0 = static_cast<int64_t>(a); r0 < static_cast<int64_t>(b); r0 += kSmallBatchBlockRows) {
        const int64_t r1 = std::min<int64_t>(static_cast<int64_t>(b), r0 + kSmallBatchBlockRows);
        for (int64_t i = 0; i < m; ++i)
          k.gemv_rows(w.type, w.data, w.row_bytes, x + i * w.cols, w.cols, y + i * w.rows + r0, r0, r1);
      }
    });
    return;
  }
  // Each thread multiplies its own slice of W's rows with a single-threaded sgemm, so the pool is the
  // only source of parallelism (BLAS threads plus pool threads would oversubscribe the cores).
  pool.parallel_for(static_cast<size_t>(w.rows), [&](size_t a, size_t b, int) {
    const int64_t r_begin = static_cast<int64_t>(a), r_end = static_cast<int64_t>(b);
    if (w.type == DType::F32) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m), static_cast<int>(r_end - r_begin),
                  static_cast<int>(w.cols), 1.0f, x, static_cast<int>(w.cols),
                  reinterpret_cast<const float*>(w.data + static_cast<size_t>(r_begin) * w.row_bytes),
                  static_cast<int>(w.cols), 0.0f, y + r_begin, static_cast<int>(w.rows));
      return;
    }
    // Tiles of about 2 MiB of f32 weights keep the dequantized copy small and cache-friendly.
    const int64_t tile_rows = std::clamp<int64_t>((2 << 20) / (w.cols * 4), 16, r_end - r_begin);
    thread_local std::vector<float> tile;
    tile.resize(static_cast<size_t>(tile_rows * w.cols));
    for (int64_t r0 = r_begin; r0 < r_end; r0 += tile_rows) {
      const int64_t nr = std::min(tile_rows, r_end - r0);
      for (int64_t r = 0; r < nr; ++r) {
        const uint8_t* src = w.data + static_cast<size_t>(r0 + r) * w.row_bytes;
        float* dst = tile.data() + r * w.cols;
        k.dequant_row(w.type, src, dst, w.cols);
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m), static_cast<int>(nr),
                  static_cast<int>(w.cols), 1.0f, x, static_cast<int>(w.cols), tile.data(), static_cast<int>(w.cols),
                  0.0f, y + r0, static_cast<int>(w.rows));
    }
  });
}

void matmul_many(ThreadPool& pool, std::initializer_list<std::pair<const WeightView*, float*>> products, const float* x,
                 int64_t m) {
  if (m >= kGemmMinRows) {
    for (const auto& [w, y] : products) matmul(pool, *w, x, m, y);
    return;
  }
  const Kernels& k = kernels();
  std::vector<std::pair<const WeightView*, float*>> list(products);
  PackedInput input(pool, x, m, list.front().first->cols);
  std::vector<const QuantizedRow*> xq;
  for (const auto& p : list) xq.push_back(p.first->packed ? input.rows(activation_block(p.first->type)) : nullptr);
  std::vector<int64_t> first{0};
  for (const auto& p : list) first.push_back(first.back() + p.first->rows);
  pool.parallel_for(static_cast<size_t>(first.back()), [&](size_t a, size_t b, int) {
    for (size_t i = 0; i < list.size(); ++i) {
      const int64_t r0 = std::max<int64_t>(static_cast<int64_t>(a), first[i]) - first[i];
      const int64_t r1 = std::min<int64_t>(static_cast<int64_t>(b), first[i + 1]) - first[i];
      if (r0 >= r1) continue;
      const WeightView& w = *list[i].first;
      if (w.packed != nullptr) {
        packed_rows(k, w, xq[i], m, list[i].second, r0, r1);
        continue;
      }
      for (int64_t b0 = r0; b0 < r1; b0 += kSmallBatchBlockRows) {
        const int64_t b1 = std::min(r1, b0 + kSmallBatchBlockRows);
        for (int64_t row = 0; row < m; ++row)
          k.gemv_rows(w.type, w.data, w.row_bytes, x + row * w.cols, w.cols, list[i].second + row * w.rows + b0, b0,
                      b1);
      }
    }
  });
}

}  // namespace kvwise
