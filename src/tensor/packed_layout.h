// The byte layouts of tensor/packed.h, shared by the packer, the scalar reference and the SIMD kernels.
#pragma once
#include <cstdint>

#include "tensor/quant_blocks.h"

namespace kvwise {

struct PackedQ4_0 {
  uint16_t d[8];
  uint8_t qs[128];
};
struct PackedQ8_0 {
  uint16_t d[8];
  int8_t qs[256];
};
struct PackedQ4_K {
  uint16_t d[8], dmin[8];
  uint8_t sc[8][8], mn[8][8];  // [sub-block][row]
  uint8_t qs[1024];
};
struct PackedQ5_K {
  PackedQ4_K lo;
  uint8_t qh[256];
};
struct PackedQ6_K {
  uint16_t d[8];
  int8_t sc[16][8];  // [group of 16][row]
  uint8_t ql[1024];
  uint8_t qh[512];
};
static_assert(sizeof(PackedQ4_0) == 144 && sizeof(PackedQ8_0) == 272);
static_assert(sizeof(PackedQ4_K) == 1184 && sizeof(PackedQ5_K) == 1440 && sizeof(PackedQ6_K) == 1680);

}  // namespace kvwise
