// The packed-weight kernels of each instruction set (see Kernels::gemm_packed and quantize_row_q8).
#pragma once
#include <cstdint>

#include "tensor/dtype.h"

namespace kvwise {

struct QuantizedRow;

void gemm_packed_scalar(DType t, const uint8_t* packed, int64_t cols, const QuantizedRow* x, int nx, float* y,
                        int64_t ldy, int64_t g0, int64_t g1);
void gemm_packed_avx2(DType t, const uint8_t* packed, int64_t cols, const QuantizedRow* x, int nx, float* y,
                      int64_t ldy, int64_t g0, int64_t g1);
void quantize_row_q8_avx2(const float* x, int64_t n, int block, int8_t* q, float* d, int16_t* sum16);

}  // namespace kvwise
