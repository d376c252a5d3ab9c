#include "tensor/matmul.h"

#include <cblas.h>

#include <algorithm>
#include <vector>

#include "tensor/kernels.h"
#include "tensor/quant.h"

namespace kvwise {

void set_blas_threads(int n) { openblas_set_num_threads(std::max(1, n)); }

void matmul(ThreadPool& pool, const WeightView& w, const float* x, int64_t m, float* y) {
  const Kernels& k = kernels();
  if (m < kGemmMinRows) {
    pool.parallel_for(static_cast<size_t>(w.rows), [&](size_t r0, size_t r1, int) {
      for (int64_t i = 0; i < m; ++i)
        k.gemv_rows(w.type, w.data, w.row_bytes, x + i * w.cols, w.cols, y + i * w.rows + static_cast<int64_t>(r0),
                    static_cast<int64_t>(r0), static_cast<int64_t>(r1));
    });
    return;
  }
  if (w.type == DType::F32) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m), static_cast<int>(w.rows),
                static_cast<int>(w.cols), 1.0f, x, static_cast<int>(w.cols), reinterpret_cast<const float*>(w.data),
                static_cast<int>(w.cols), 0.0f, y, static_cast<int>(w.rows));
    return;
  }
  // Tiles of about 8 MiB of f32 weights keep the dequantized copy in cache-friendly, bounded memory.
  const int64_t tile_rows = std::clamp<int64_t>((8 << 20) / (w.cols * 4), 16, w.rows);
  thread_local std::vector<float> tile;
  tile.resize(static_cast<size_t>(tile_rows * w.cols));
  for (int64_t r0 = 0; r0 < w.rows; r0 += tile_rows) {
    const int64_t nr = std::min(tile_rows, w.rows - r0);
    float* t = tile.data();
    pool.parallel_for(static_cast<size_t>(nr), [&](size_t a, size_t b, int) {
      for (size_t r = a; r < b; ++r) {
        const uint8_t* src = w.data + static_cast<size_t>(r0 + static_cast<int64_t>(r)) * w.row_bytes;
        if (w.type == DType::F16)
          k.f16_to_f32(reinterpret_cast<const uint16_t*>(src), t + r * w.cols, w.cols);
        else
          dequantize_row(w.type, src, t + r * w.cols, w.cols);
      }
    });
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m), static_cast<int>(nr),
                static_cast<int>(w.cols), 1.0f, x, static_cast<int>(w.cols), t, static_cast<int>(w.cols), 0.0f, y + r0,
                static_cast<int>(w.rows));
  }
}

}  // namespace kvwise
