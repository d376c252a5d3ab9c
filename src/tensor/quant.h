// Reference (scalar) dequantization and quantization of rows of any compute type.
#pragma once
#include <cstdint>

#include "tensor/dtype.h"

namespace kvwise {

// dst[0..n) = values of the n-element row at src. n must be a multiple of the block size.
void dequantize_row(DType t, const void* src, float* dst, int64_t n);
// Quantizes n floats into dst (row_bytes(t, n) bytes). Supports F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q5_1,
// Q4_K, Q5_K, Q6_K.
void quantize_row(DType t, const float* src, void* dst, int64_t n);

// Activations for integer dot products with Q4_0/Q8_0 weights (as ggml does): per 32 values a scale
// d = max|x| / 127 and q = round(x / d). n must be a multiple of 32.
void quantize_activation_q8(const float* x, int64_t n, int8_t* q, float* d);

}  // namespace kvwise
