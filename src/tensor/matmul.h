// Y = X · Wᵀ for weights of any compute type. Packed quantized weights run integer kernels on int8
// copies of the input rows, for one row (decode) and many (prefill). Otherwise one input row runs the
// GEMV kernels directly on the weights, and many rows (prefill) dequantize row tiles of W and call
// OpenBLAS sgemm. Not reentrant per thread (per-thread scratch), safe from several threads at once.
#pragma once
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <utility>

#include "base/thread_pool.h"
#include "tensor/dtype.h"

namespace kvwise {

struct WeightView {
  DType type = DType::F32;
  const uint8_t* data = nullptr;
  int64_t rows = 0;  // output features
  int64_t cols = 0;  // input features
  size_t row_bytes = 0;
  // The same matrix in 8-row groups (tensor/packed.h), when it was repacked at load; products then run
  // the integer kernels on it (decode and prefill alike) and never read data.
  const uint8_t* packed = nullptr;
};

// y[i * w.rows + r] = sum_c x[i * w.cols + c] * W[r][c] for i < m.
void matmul(ThreadPool& pool, const WeightView& w, const float* x, int64_t m, float* y);

// Several products of the same input in one parallel loop (Q/K/V, gate/up): one synchronisation
// instead of one per matrix, which matters for single-token decode steps.
void matmul_many(ThreadPool& pool, std::initializer_list<std::pair<const WeightView*, float*>> products, const float* x,
                 int64_t m);

// Rows at or above this use the dequantize + sgemm path.
constexpr int64_t kGemmMinRows = 8;

// Sets the BLAS library's own thread count. The engine keeps it at 1 and parallelises over its own
// pool instead (see matmul).
void set_blas_threads(int n);

}  // namespace kvwise
