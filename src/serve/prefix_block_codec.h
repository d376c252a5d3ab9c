// How a prefix-cache block stores its KV rows: as the KV store holds them ("f16": the store's own
// rows, f16 or f32), or quantised to int8/int4 (kvwise serve --prefix-cache-dtype), so that the same
// bytes hold 1.8x / 3.2x the blocks (head_dim 64 or 128, groups of 32). A quantised row is
// asymmetric uniform per group of `group` channels (kv_quant.h: codes, then an f16 scale and zero
// per group); rows are quantised when a block is captured and dequantised into the sequence's
// store rows when it is loaded, so attention itself is unchanged. The fidelity cost is measured by
// `kvwise eval --prefix-cache-dtype` (docs/results/prefix-cache.md).
// Thread-safety: immutable after construction; encode/decode may run concurrently.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "tensor/dtype.h"

namespace kvwise {

class PrefixBlockCodec {
 public:
  // dtype: "f16", "int8" or "int4"; group must be a multiple of 8 dividing head_dim (capped at
  // head_dim). Throws kvwise::Error on anything else.
  PrefixBlockCodec(DType store_type, int head_dim, const std::string& dtype = "f16", int group = 32);

  bool raw() const { return bits_ == 0; }
  const std::string& dtype() const { return dtype_; }
  size_t store_row_bytes() const { return store_row_; }    // one K or V row as the KV store holds it
  size_t stored_row_bytes() const { return stored_row_; }  // the same row inside a cached block
  // Identifies the stored format in block-file headers (store type, bits, group).
  uint32_t tag() const;

  // n rows of store_row_bytes() each -> n rows of stored_row_bytes() each, and back.
  void encode(const uint8_t* rows, int n, uint8_t* out) const;
  void decode(const uint8_t* in, int n, uint8_t* rows) const;

  // Bytes of a stored row over an f16 store row (what kvwise sim --block-dtype assumes); group <= 128.
  static double f16_ratio(const std::string& dtype, int group);

 private:
  DType type_;
  int head_dim_, bits_ = 0, group_ = 32;
  std::string dtype_;
  size_t store_row_ = 0, stored_row_ = 0, codes_ = 0;
};

}  // namespace kvwise
