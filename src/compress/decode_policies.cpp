// Dispositions and decode policies: what happens to the tokens a policy does not keep, and how a
// sequence stays within its budget as tokens are generated.
#include <algorithm>

#include "compress/components.h"
#include "compress/select.h"

namespace kvwise {

namespace {

class Drop : public Disposition {
 public:
  std::string name() const override { return "drop"; }
  void apply(KvStore& kv, SeqId seq, int layer, int head, std::span<const int> keep, int /*tail*/) const override {
    if (static_cast<int>(keep.size()) == kv.head_len(seq, layer, head)) return;
    kv.retain(seq, layer, head, keep);
  }
};

std::vector<int> all_slots(int len) {
  std::vector<int> v(static_cast<size_t>(len));
  for (int i = 0; i < len; ++i) v[static_cast<size_t>(i)] = i;
  return v;
}

class Grow : public DecodePolicy {
 public:
  std::string name() const override { return "grow"; }
  bool needs_scores() const override { return false; }
  bool due(int) const override { return false; }
  std::vector<int> select(const HeadPlan&, int len, std::span<const float>) const override { return all_slots(len); }
};

class Fifo : public DecodePolicy {
 public:
  std::string name() const override { return "fifo"; }
  bool needs_scores() const override { return false; }
  bool due(int) const override { return true; }
  std::vector<int> select(const HeadPlan& p, int len, std::span<const float>) const override {
    if (len <= p.cap) return all_slots(len);
    const int head = std::min(p.static_len, p.cap);
    std::vector<int> keep;
    for (int i = 0; i < head; ++i) keep.push_back(i);
    for (int i = len - (p.cap - head); i < len; ++i) keep.push_back(i);
    return keep;
  }
};

class Evict : public DecodePolicy {
 public:
  explicit Evict(int every) : every_(std::max(1, every)) {}
  std::string name() const override { return every_ == 1 ? "evict" : "evict-every-" + std::to_string(every_); }
  bool needs_scores() const override { return true; }
  bool due(int step) const override { return step % every_ == 0; }
  std::vector<int> select(const HeadPlan& p, int len, std::span<const float> scores) const override {
    if (len <= p.cap) return all_slots(len);
    const int s = std::min(p.sinks, len), w = std::min(p.window, len - s);
    const int cand = len - s - w;
    const int keep_cand = std::max(0, p.cap - s - w);
    std::vector<int> keep;
    for (int i = 0; i < s; ++i) keep.push_back(i);
    for (int i : top_k_indices(scores.subspan(static_cast<size_t>(s), static_cast<size_t>(cand)), keep_cand))
      keep.push_back(s + i);
    for (int i = len - w; i < len; ++i) keep.push_back(i);
    return keep;
  }

 private:
  int every_;
};

}  // namespace

std::shared_ptr<Disposition> make_drop() {
  return std::make_shared<Drop>();
}
std::shared_ptr<DecodePolicy> make_grow() {
  return std::make_shared<Grow>();
}
std::shared_ptr<DecodePolicy> make_fifo() {
  return std::make_shared<Fifo>();
}
std::shared_ptr<DecodePolicy> make_evict(int every) {
  return std::make_shared<Evict>(every);
}

}  // namespace kvwise
