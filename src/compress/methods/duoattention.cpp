// DuoAttention (Xiao et al., arXiv:2410.10819): retrieval heads keep the whole cache, streaming heads
// only their attention sinks and a recent window, in prefill and while decoding. Which heads retrieve
// comes from a one-time calibration (`kvwise profile --method duoattention`, compress/duo_profile.h;
// kvwise measures each head's streaming deviation instead of training the paper's gates
// [approximation]). The budget decides how many heads retrieve: the heads with the largest scores,
// across all layers, as many as the budget's tokens can hold in full (kvpress's
// head_compression_ratio, derived from the budget here).
#include <algorithm>
#include <numeric>

#include "base/error.h"
#include "compress/components.h"
#include "compress/duo_profile.h"
#include "compress/method_common.h"
#include "compress/pipeline.h"

namespace kvwise {

namespace {

class DuoHeads : public HeadBudgeter {
 public:
  explicit DuoHeads(std::vector<std::vector<double>> scores) : scores_(std::move(scores)) {
    for (size_t l = 0; l < scores_.size(); ++l)
      for (size_t h = 0; h < scores_[l].size(); ++h) order_.push_back({static_cast<int>(l), static_cast<int>(h)});
    // Retrieval-most first; ties to the lower (layer, head) so the choice is reproducible.
    std::stable_sort(order_.begin(), order_.end(), [&](const auto& a, const auto& b) {
      return scores_[static_cast<size_t>(a.first)][static_cast<size_t>(a.second)] >
             scores_[static_cast<size_t>(b.first)][static_cast<size_t>(b.second)];
    });
  }
  std::string name() const override { return "duoattention"; }
  std::vector<int> split(int layer, int mean, std::span<const std::vector<float>> head_scores) const override {
    const int H = static_cast<int>(head_scores.size());
    KV_CHECK(layer < static_cast<int>(scores_.size()) && H == static_cast<int>(scores_[0].size()),
             "duoattention: the profile has {} layers x {} KV heads; the model has another shape", scores_.size(),
             scores_.empty() ? 0 : scores_[0].size());
    const long candidates = static_cast<long>(head_scores.empty() ? 0 : head_scores[0].size());
    // As many heads retrieve as the whole budget (every layer's heads at the mean) holds in full.
    const long total = static_cast<long>(mean) * H * static_cast<long>(scores_.size());
    const size_t retrieval =
        candidates == 0 ? order_.size()
                        : static_cast<size_t>(std::min<long>(static_cast<long>(order_.size()), total / candidates));
    std::vector<int> out(static_cast<size_t>(H), 0);
    for (size_t i = 0; i < retrieval; ++i)
      if (order_[i].first == layer) out[static_cast<size_t>(order_[i].second)] = static_cast<int>(candidates);
    return out;
  }

 private:
  std::vector<std::vector<double>> scores_;
  std::vector<std::pair<int, int>> order_;
};

// Retrieval heads (those that kept candidates beyond their sinks) grow; streaming heads keep their
// sinks and roll their recent window.
class DuoDecode : public DecodePolicy {
 public:
  std::string name() const override { return "duo"; }
  bool needs_scores() const override { return false; }
  bool due(int) const override { return true; }
  std::vector<int> select(const HeadPlan& p, int len, std::span<const float>) const override {
    std::vector<int> keep;
    if (p.static_len > p.sinks || len <= p.cap) {
      keep.resize(static_cast<size_t>(len));
      std::iota(keep.begin(), keep.end(), 0);
      return keep;
    }
    for (int i = 0; i < std::min(p.sinks, len); ++i) keep.push_back(i);
    for (int i = std::max(p.sinks, len - (p.cap - p.sinks)); i < len; ++i) keep.push_back(i);
    return keep;
  }
};

}  // namespace

KVWISE_METHODS(duoattention) {
  registry.add({.name = "duoattention",
                .summary = "DuoAttention: retrieval heads keep everything, streaming heads sinks + a recent window; "
                           "heads from `kvwise profile --method duoattention`",
                .paper = "arXiv:2410.10819",
                .group = "head-budgets",
                .params = {ParamSchema::text("profile", "", "FILE (CLI) or NAME (registered on the server)"),
                           ParamSchema::integer("sinks", -1, -1, kMaxPolicyWindow, "-1: the profile's"),
                           ParamSchema::integer("recent", -1, -1, kMaxPolicyWindow, "-1: the profile's")},
                .example = "",  // needs a profile file
                .approximation = true,
                .build = [](KvPolicy& p, MethodArgs& a) {
                  const std::string path =
                      profile_path(a, "DuoAttention profile", "kvwise profile --method duoattention");
                  const DuoProfile prof = DuoProfile::load(path);
                  const int sinks = a.integer("sinks"), recent = a.integer("recent");
                  p.sinks = sinks >= 0 ? sinks : prof.sinks;
                  p.window = recent >= 0 ? recent : prof.recent;
                  p.scorer = make_position_scorer();  // a head keeps all its candidates or none
                  p.heads = std::make_shared<DuoHeads>(prof.scores);
                  p.decode = std::make_shared<DuoDecode>();
                }});
}

}  // namespace kvwise
