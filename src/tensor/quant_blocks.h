// Byte layouts of the quantized blocks, identical to ggml's so GGUF files are read in place.
#pragma once
#include <cstdint>

namespace kvwise {

constexpr int QK8_0 = 32;
constexpr int QK4_0 = 32;
constexpr int QK_K = 256;

struct BlockQ8_0 {
  uint16_t d;  // f16 scale
  int8_t qs[QK8_0];
};
struct BlockQ4_0 {
  uint16_t d;             // f16 scale
  uint8_t qs[QK4_0 / 2];  // element j in low nibble of qs[j], element j+16 in the high nibble
};
struct BlockQ4_K {
  uint16_t d, dmin;    // f16 super-block scales for the 6-bit sub-block scales and mins
  uint8_t scales[12];  // 8 sub-blocks x (6-bit scale, 6-bit min), packed
  uint8_t qs[QK_K / 2];
};
struct BlockQ6_K {
  uint8_t ql[QK_K / 2];      // low 4 bits
  uint8_t qh[QK_K / 4];      // high 2 bits
  int8_t scales[QK_K / 16];  // 16 sub-blocks of 16
  uint16_t d;
};
// ggml's Q5_K block: 5-bit codes, qh bit j of byte l is the fifth bit of element 32j + l.
struct BlockQ5_K {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qh[QK_K / 8];
  uint8_t qs[QK_K / 2];
};
static_assert(sizeof(BlockQ5_K) == 176);
// The 6-bit scale and min of Q4_K (and Q5_K) sub-block j. static: the ISA-specific kernels include it too.
static inline void q4k_scale_min(int j, const uint8_t* q, int* d, int* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

static_assert(sizeof(BlockQ8_0) == 34 && sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ4_K) == 144 && sizeof(BlockQ6_K) == 210);

}  // namespace kvwise
