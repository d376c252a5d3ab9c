// The "demote" disposition (kv-algorithms §10, §1.7): tokens a policy does not keep move into a
// low-precision segment of their head instead of being dropped. MiKV uses it behind any scorer; the
// uniform kv-int8/kv-int4 policies use it behind a recent-residual FIFO.
#include <algorithm>
#include <cmath>

#include "base/error.h"
#include "compress/components.h"
#include "kv/kv_quant.h"

namespace kvwise {

namespace {

class Demote : public Disposition {
 public:
  explicit Demote(DemoteOptions o) : o_(std::move(o)) {}
  std::string name() const override { return "demote(" + o_.low.to_string() + ")"; }

  void apply(KvStore& kv, SeqId seq, int layer, int head, std::span<const int> keep, int tail) const override {
    const auto& segs = kv.segments(seq, layer, head);
    const bool first = segs.empty();
    // The balancer is fixed when the head first demotes (after its prefill), from the prompt's keys and
    // queries; later demotions reuse the segment's.
    std::vector<float> balancer;
    if (first && o_.balance) balancer = prompt_balancer(kv, seq, layer, head);
    if (first && o_.high) {
      // MiKV with int8/int4 important tokens: the selected prefix tokens go to the high segment now;
      // the protected tail stays in the pages, where decode-time eviction demotes to the low segment.
      const int len = kv.head_len(seq, layer, head);
      std::vector<int> drop_to_low, stay;
      size_t ki = 0;
      for (int s = 0; s < len; ++s) {
        const bool kept = ki < keep.size() && keep[ki] == s;
        if (kept) ++ki;
        if (!kept)
          drop_to_low.push_back(s);
        else if (s >= len - tail)
          stay.push_back(s);
      }
      // Low first (losers), then high (kept prefix); each demote call keeps what the next needs.
      std::vector<int> not_low;
      ki = 0;
      for (int s = 0; s < len; ++s) {
        if (ki < drop_to_low.size() && drop_to_low[ki] == s) {
          ++ki;
          continue;
        }
        not_low.push_back(s);
      }
      kv.demote(seq, layer, head, not_low, o_.low, balancer);
      // Slots are renumbered: the survivors are 0..not_low.size()-1, the tail at the end.
      const int n = static_cast<int>(not_low.size()), nt = static_cast<int>(stay.size());
      std::vector<int> tail_slots;
      for (int s = n - nt; s < n; ++s) tail_slots.push_back(s);
      kv.demote(seq, layer, head, tail_slots, *o_.high, balancer);
      return;
    }
    kv.demote(seq, layer, head, keep, o_.low, balancer);
  }

 private:
  // b_c = sqrt(max |q_c| / max |k_c|) with the query maximum over the GQA group (taps) and the key
  // maximum over the head's prompt keys.
  static std::vector<float> prompt_balancer(const KvStore& kv, SeqId seq, int layer, int head) {
    const KvLayout& L = kv.layout();
    const int hd = L.head_dim, G = L.n_heads / L.n_kv_heads;
    std::vector<float> qmax(static_cast<size_t>(hd), 0.0f), kmax(qmax.size(), 0.0f), k(qmax.size());
    KV_CHECK(kv.tap_config(seq).q_absmax, "the key balancer needs the query-maximum taps");
    for (int g = 0; g < G; ++g) {
      const std::vector<float>& m = kv.taps(seq, layer, head * G + g).q_absmax;
      for (size_t c = 0; c < m.size() && c < qmax.size(); ++c) qmax[c] = std::max(qmax[c], m[c]);
    }
    for (int s = 0; s < kv.head_len(seq, layer, head); ++s) {
      kv.read_slot(seq, layer, head, s, k.data(), nullptr);
      for (size_t c = 0; c < k.size(); ++c) kmax[c] = std::max(kmax[c], std::fabs(k[c]));
    }
    return key_balancer(qmax, kmax);
  }

  DemoteOptions o_;
};

}  // namespace

std::shared_ptr<Disposition> make_demote(DemoteOptions o) {
  return std::make_shared<Demote>(std::move(o));
}

}  // namespace kvwise
