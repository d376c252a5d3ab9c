#include "compress/stages.h"

namespace kvwise {

HeadKv::HeadKv(const KvStore& kv, SeqId seq, int layer, int head)
    : kv_(kv), seq_(seq), layer_(layer), head_(head), len_(kv.head_len(seq, layer, head)), dim_(kv.layout().head_dim) {}

void HeadKv::load() const {
  if (loaded_) return;
  loaded_ = true;
  const size_t d = static_cast<size_t>(dim_);
  k_.resize(static_cast<size_t>(len_) * d);
  v_.resize(static_cast<size_t>(len_) * d);
  for (int i = 0; i < len_; ++i)
    kv_.read_slot(seq_, layer_, head_, i, &k_[static_cast<size_t>(i) * d], &v_[static_cast<size_t>(i) * d]);
}

std::span<const float> HeadKv::keys() const {
  load();
  return k_;
}

std::span<const float> HeadKv::values() const {
  load();
  return v_;
}

}  // namespace kvwise
