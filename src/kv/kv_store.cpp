#include "kv/kv_store.h"

#include <algorithm>
#include <cstring>

#include "base/error.h"
#include "tensor/fp16.h"

namespace kvwise {

namespace {
size_t element_bytes(DType t) {
  KV_CHECK(t == DType::F32 || t == DType::F16, "KV cache type must be f32 or f16, not {}", dtype_name(t));
  return t == DType::F32 ? 4 : 2;
}

template <typename Vec>
void compact(Vec& v, std::span<const int> keep) {
  if (v.empty()) return;
  for (size_t i = 0; i < keep.size(); ++i) v[i] = static_cast<size_t>(keep[i]) < v.size() ? v[keep[i]] : 0;
  v.resize(keep.size());
}
}  // namespace

KvStore::KvStore(const KvLayout& layout)
    : layout_(layout),
      row_bytes_(element_bytes(layout.type) * static_cast<size_t>(layout.head_dim)),
      kv_bytes_(row_bytes_ * static_cast<size_t>(layout.page_tokens)),
      pool_(2 * kv_bytes_ + 4 * static_cast<size_t>(layout.page_tokens)) {
  KV_CHECK(layout.n_layers > 0 && layout.n_kv_heads > 0 && layout.head_dim > 0 && layout.page_tokens > 0,
           "invalid KV layout");
  KV_CHECK(layout.n_heads % layout.n_kv_heads == 0, "query heads must be a multiple of KV heads");
}

SeqId KvStore::create_sequence() {
  const SeqId id = next_id_++;
  Sequence& s = seqs_[id];
  s.heads.resize(static_cast<size_t>(layout_.n_layers * layout_.n_kv_heads));
  return id;
}

void KvStore::free_sequence(SeqId seq) {
  Sequence& s = get(seq);
  for (auto& h : s.heads)
    for (uint32_t p : h.pages) pool_.release(p);
  seqs_.erase(seq);
}

std::vector<SeqId> KvStore::sequences() const {
  std::vector<SeqId> out;
  for (const auto& [id, s] : seqs_) out.push_back(id);
  return out;
}

KvStore::Sequence& KvStore::get(SeqId seq) {
  auto it = seqs_.find(seq);
  KV_CHECK(it != seqs_.end(), "no sequence {} in the KV store", seq);
  return it->second;
}
const KvStore::Sequence& KvStore::get(SeqId seq) const {
  auto it = seqs_.find(seq);
  KV_CHECK(it != seqs_.end(), "no sequence {} in the KV store", seq);
  return it->second;
}
KvStore::HeadList& KvStore::list(SeqId seq, int layer, int head) {
  return get(seq).heads[static_cast<size_t>(layer * layout_.n_kv_heads + head)];
}
const KvStore::HeadList& KvStore::list(SeqId seq, int layer, int head) const {
  return get(seq).heads[static_cast<size_t>(layer * layout_.n_kv_heads + head)];
}

int32_t KvStore::next_position(SeqId seq) const {
  return get(seq).next_pos;
}
void KvStore::set_next_position(SeqId seq, int32_t pos) {
  get(seq).next_pos = pos;
}

void KvStore::append(SeqId seq, int layer, int head, const float* k, const float* v, int32_t pos) {
  HeadList& h = list(seq, layer, head);
  const int in_page = h.len % layout_.page_tokens;
  if (in_page == 0) h.pages.push_back(pool_.alloc());
  const uint32_t page = h.pages.back();
  if (layout_.type == DType::F32) {
    std::memcpy(slot_k(page, in_page), k, row_bytes_);
    std::memcpy(slot_v(page, in_page), v, row_bytes_);
  } else {
    auto* kd = reinterpret_cast<uint16_t*>(slot_k(page, in_page));
    auto* vd = reinterpret_cast<uint16_t*>(slot_v(page, in_page));
    for (int c = 0; c < layout_.head_dim; ++c) {
      kd[c] = fp32_to_fp16(k[c]);
      vd[c] = fp32_to_fp16(v[c]);
    }
  }
  slot_pos(page)[in_page] = pos;
  ++h.len;
}

void KvStore::copy_rows(SeqId seq, int layer, int head, int slot0, int n, void* k, void* v) const {
  const HeadList& h = list(seq, layer, head);
  KV_CHECK(slot0 >= 0 && n >= 0 && slot0 + n <= h.len, "copy_rows: slots [{}, {}) out of range (head holds {})", slot0,
           slot0 + n, h.len);
  const int P = layout_.page_tokens;
  auto* kd = static_cast<uint8_t*>(k);
  auto* vd = static_cast<uint8_t*>(v);
  for (int done = 0; done < n;) {
    const int slot = slot0 + done, in_page = slot % P, m = std::min(n - done, P - in_page);
    const uint8_t* page = pool_.data(h.pages[static_cast<size_t>(slot / P)]);
    const size_t off = static_cast<size_t>(in_page) * row_bytes_, bytes = static_cast<size_t>(m) * row_bytes_;
    std::memcpy(kd + static_cast<size_t>(done) * row_bytes_, page + off, bytes);
    std::memcpy(vd + static_cast<size_t>(done) * row_bytes_, page + kv_bytes_ + off, bytes);
    done += m;
  }
}

void KvStore::append_rows(SeqId seq, int layer, int head, const void* k, const void* v, int n, int32_t pos0) {
  HeadList& h = list(seq, layer, head);
  const int P = layout_.page_tokens;
  const auto* ks = static_cast<const uint8_t*>(k);
  const auto* vs = static_cast<const uint8_t*>(v);
  for (int done = 0; done < n;) {
    const int in_page = h.len % P, m = std::min(n - done, P - in_page);
    if (in_page == 0) h.pages.push_back(pool_.alloc());
    const uint32_t page = h.pages.back();
    const size_t bytes = static_cast<size_t>(m) * row_bytes_, src = static_cast<size_t>(done) * row_bytes_;
    std::memcpy(slot_k(page, in_page), ks + src, bytes);
    std::memcpy(slot_v(page, in_page), vs + src, bytes);
    for (int i = 0; i < m; ++i) slot_pos(page)[in_page + i] = pos0 + done + i;
    h.len += m;
    done += m;
  }
}

int KvStore::head_len(SeqId seq, int layer, int head) const {
  return list(seq, layer, head).len;
}

const std::vector<uint32_t>& KvStore::head_pages(SeqId seq, int layer, int head) const {
  return list(seq, layer, head).pages;
}

int32_t KvStore::slot_position(SeqId seq, int layer, int head, int slot) const {
  const HeadList& h = list(seq, layer, head);
  KV_CHECK(slot >= 0 && slot < h.len, "slot {} out of range", slot);
  return page_pos(h.pages[static_cast<size_t>(slot / layout_.page_tokens)])[slot % layout_.page_tokens];
}

void KvStore::read_slot(SeqId seq, int layer, int head, int slot, float* k, float* v) const {
  const HeadList& h = list(seq, layer, head);
  KV_CHECK(slot >= 0 && slot < h.len, "slot {} out of range", slot);
  const uint32_t page = h.pages[static_cast<size_t>(slot / layout_.page_tokens)];
  const size_t off = static_cast<size_t>(slot % layout_.page_tokens) * row_bytes_;
  const int hd = layout_.head_dim;
  const auto load = [&](const uint8_t* src, float* dst) {
    if (dst == nullptr) return;
    if (layout_.type == DType::F32) {
      std::memcpy(dst, src, row_bytes_);
    } else {
      const auto* x = reinterpret_cast<const uint16_t*>(src);
      for (int c = 0; c < hd; ++c) dst[c] = fp16_to_fp32(x[c]);
    }
  };
  load(pool_.data(page) + off, k);
  load(pool_.data(page) + kv_bytes_ + off, v);
}

void KvStore::rewrite_key(SeqId seq, int layer, int head, int slot, const float* k, int32_t pos) {
  HeadList& h = list(seq, layer, head);
  KV_CHECK(slot >= 0 && slot < h.len, "slot {} out of range", slot);
  const uint32_t page = h.pages[static_cast<size_t>(slot / layout_.page_tokens)];
  const int in_page = slot % layout_.page_tokens;
  if (layout_.type == DType::F32) {
    std::memcpy(slot_k(page, in_page), k, row_bytes_);
  } else {
    auto* kd = reinterpret_cast<uint16_t*>(slot_k(page, in_page));
    for (int c = 0; c < layout_.head_dim; ++c) kd[c] = fp32_to_fp16(k[c]);
  }
  slot_pos(page)[in_page] = pos;
}

void KvStore::retain(SeqId seq, int layer, int head, std::span<const int> keep) {
  HeadList& h = list(seq, layer, head);
  const int P = layout_.page_tokens;
  for (size_t i = 0; i < keep.size(); ++i) {
    KV_CHECK(keep[i] >= 0 && keep[i] < h.len, "retain: slot {} out of range (head holds {})", keep[i], h.len);
    KV_CHECK(i == 0 || keep[i] > keep[i - 1], "retain: slots must be strictly ascending");
  }
  // Move runs of consecutive kept slots with one memmove per page-bounded piece (decode-time eviction
  // shifts long runs by one slot every step).
  for (size_t i = 0; i < keep.size();) {
    size_t run = 1;
    while (i + run < keep.size() && keep[i + run] == keep[i + run - 1] + 1) ++run;
    for (size_t done = 0; done < run;) {
      const int src = keep[i + done], dst = static_cast<int>(i + done);
      const int n =
          static_cast<int>(std::min<size_t>(run - done, static_cast<size_t>(std::min(P - src % P, P - dst % P))));
      if (src != dst) {
        const uint32_t sp = h.pages[static_cast<size_t>(src / P)], dp = h.pages[static_cast<size_t>(dst / P)];
        const size_t bytes = static_cast<size_t>(n) * row_bytes_;
        std::memmove(slot_k(dp, dst % P), slot_k(sp, src % P), bytes);
        std::memmove(slot_v(dp, dst % P), slot_v(sp, src % P), bytes);
        std::memmove(slot_pos(dp) + dst % P, slot_pos(sp) + src % P, static_cast<size_t>(n) * sizeof(int32_t));
      }
      done += static_cast<size_t>(n);
    }
    i += run;
  }
  h.len = static_cast<int>(keep.size());
  const size_t pages_needed = static_cast<size_t>((h.len + P - 1) / P);
  while (h.pages.size() > pages_needed) {
    pool_.release(h.pages.back());
    h.pages.pop_back();
  }
  Sequence& s = get(seq);
  if (!s.taps.empty()) {
    const int group = layout_.n_heads / layout_.n_kv_heads;
    for (int g = 0; g < group; ++g) {
      HeadTaps& t = s.taps[static_cast<size_t>(layer * layout_.n_heads + head * group + g)];
      compact(t.window_sum, keep);
      compact(t.window_sumsq, keep);
      compact(t.last_row, keep);
      compact(t.col_sums, keep);
      t.window_rows.clear();  // rows index pre-compaction slots; they are a prefill-time snapshot
      t.window_cols = 0;
    }
  }
}

int KvStore::drop_before(SeqId seq, int layer, int head, int32_t min_pos) {
  HeadList& h = list(seq, layer, head);
  const int P = layout_.page_tokens;
  size_t n = 0;  // whole leading pages to drop
  while (static_cast<int>(n + 1) * P <= h.len && slot_pos(h.pages[n])[P - 1] < min_pos) ++n;
  if (n == 0) return 0;
  for (size_t i = 0; i < n; ++i) pool_.release(h.pages[i]);
  h.pages.erase(h.pages.begin(), h.pages.begin() + static_cast<std::ptrdiff_t>(n));
  const int dropped = static_cast<int>(n) * P;
  h.len -= dropped;
  Sequence& s = get(seq);
  if (!s.taps.empty()) {  // taps index slots: shift them with the slots
    const int group = layout_.n_heads / layout_.n_kv_heads;
    const auto shift = [&](std::vector<float>& v) {
      v.erase(v.begin(), v.begin() + std::min<std::ptrdiff_t>(dropped, static_cast<std::ptrdiff_t>(v.size())));
    };
    for (int g = 0; g < group; ++g) {
      HeadTaps& t = s.taps[static_cast<size_t>(layer * layout_.n_heads + head * group + g)];
      shift(t.window_sum);
      shift(t.window_sumsq);
      shift(t.last_row);
      shift(t.col_sums);
      t.window_rows.clear();
      t.window_cols = 0;
    }
  }
  return dropped;
}

size_t KvStore::extra_bytes(const HeadList& h) const {
  size_t b = 2 * (h.exact.k.size() + h.exact.v.size()) + sizeof(int) * h.exact.slots.size();
  for (const QuantSegment& s : h.segments) b += s.bytes();
  return b;
}

size_t KvStore::bytes_head(SeqId seq, int layer, int head) const {
  const HeadList& h = list(seq, layer, head);
  return h.pages.size() * pool_.page_bytes() + extra_bytes(h);
}

size_t KvStore::bytes_total() const {
  size_t b = pool_.bytes_in_use();
  for (const auto& [id, s] : seqs_)
    for (const HeadList& h : s.heads) b += extra_bytes(h);
  return b;
}

const std::vector<QuantSegment>& KvStore::segments(SeqId seq, int layer, int head) const {
  return list(seq, layer, head).segments;
}

int KvStore::head_tokens(SeqId seq, int layer, int head) const {
  const HeadList& h = list(seq, layer, head);
  int n = h.len;
  for (const QuantSegment& s : h.segments) n += s.size();
  return n;
}

void KvStore::demote(SeqId seq, int layer, int head, std::span<const int> keep, const QuantFormat& format,
                     std::span<const float> balancer) {
  HeadList& h = list(seq, layer, head);
  QuantSegment* seg = nullptr;
  for (QuantSegment& s : h.segments)
    if (s.format() == format) seg = &s;
  if (seg == nullptr) {
    h.segments.emplace_back(format, layout_.head_dim, std::vector<float>(balancer.begin(), balancer.end()));
    seg = &h.segments.back();
  }
  std::vector<float> k(static_cast<size_t>(layout_.head_dim)), v(k.size());
  size_t ki = 0;
  for (int slot = 0; slot < h.len; ++slot) {
    if (ki < keep.size() && keep[ki] == slot) {
      ++ki;
      continue;
    }
    read_slot(seq, layer, head, slot, k.data(), v.data());
    seg->append(k.data(), v.data(), slot_position(seq, layer, head, slot));
  }
  retain(seq, layer, head, keep);
}

void KvStore::pop_back(SeqId seq, int layer, int head, int n) {
  HeadList& h = list(seq, layer, head);
  KV_CHECK(n >= 0 && n <= h.len, "pop_back of {} slots from a head of {}", n, h.len);
  h.len -= n;
  const size_t pages_needed = static_cast<size_t>((h.len + layout_.page_tokens - 1) / layout_.page_tokens);
  while (h.pages.size() > pages_needed) {
    pool_.release(h.pages.back());
    h.pages.pop_back();
  }
}

void KvStore::set_exact_rows(SeqId seq, int layer, int head, ExactRows rows) {
  HeadList& h = list(seq, layer, head);
  KV_CHECK(!h.segments.empty() || rows.slots.empty(), "exact rows for a head without a low-precision segment");
  const size_t hd = static_cast<size_t>(layout_.head_dim);
  KV_CHECK(rows.k.size() == rows.slots.size() * hd && rows.v.size() == rows.k.size(), "exact rows: sizes disagree");
  for (size_t i = 0; i < rows.slots.size(); ++i)
    KV_CHECK(
        rows.slots[i] >= 0 && rows.slots[i] < h.segments[0].size() && (i == 0 || rows.slots[i] > rows.slots[i - 1]),
        "exact rows: slot {} is not an ascending slot of the segment", rows.slots[i]);
  h.exact = std::move(rows);
}

const KvStore::ExactRows& KvStore::exact_rows(SeqId seq, int layer, int head) const {
  return list(seq, layer, head).exact;
}

size_t KvStore::bytes_layer(SeqId seq, int layer) const {
  size_t b = 0;
  for (int h = 0; h < layout_.n_kv_heads; ++h) b += bytes_head(seq, layer, h);
  return b;
}

size_t KvStore::bytes_sequence(SeqId seq) const {
  size_t b = 0;
  for (const auto& h : get(seq).heads) b += h.pages.size() * pool_.page_bytes() + extra_bytes(h);
  return b;
}

size_t KvStore::bytes_per_token_full() const {
  return 2 * row_bytes_ * static_cast<size_t>(layout_.n_layers * layout_.n_kv_heads);
}

void KvStore::set_taps(SeqId seq, const TapConfig& cfg) {
  Sequence& s = get(seq);
  s.tap_cfg = cfg;
  s.taps.assign(cfg.enabled ? static_cast<size_t>(layout_.n_layers * layout_.n_heads) : 0, HeadTaps{});
}

const TapConfig& KvStore::tap_config(SeqId seq) const {
  return get(seq).tap_cfg;
}

HeadTaps& KvStore::taps(SeqId seq, int layer, int q_head) {
  Sequence& s = get(seq);
  KV_CHECK(!s.taps.empty(), "statistic taps are not enabled for sequence {}", seq);
  return s.taps[static_cast<size_t>(layer * layout_.n_heads + q_head)];
}

const HeadTaps& KvStore::taps(SeqId seq, int layer, int q_head) const {
  const Sequence& s = get(seq);
  KV_CHECK(!s.taps.empty(), "statistic taps are not enabled for sequence {}", seq);
  return s.taps[static_cast<size_t>(layer * layout_.n_heads + q_head)];
}

}  // namespace kvwise
