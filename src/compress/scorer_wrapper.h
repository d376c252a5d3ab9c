// A token scorer that wraps another (ChunkKV, CriticalKV): it forwards the statistics, the per-query
// scores and the needs to the inner scorer, and adds its own KV-head pass in rescore() after the
// inner one. Immutable after construction (thread-safe like every scorer).
#pragma once
#include <memory>
#include <string>

#include "compress/stages.h"

namespace kvwise {

class WrappedScorer : public TokenScorer {
 public:
  explicit WrappedScorer(std::shared_ptr<const TokenScorer> inner) : inner_(std::move(inner)) {}
  void add_taps(TapConfig& cfg, bool decode) const override { inner_->add_taps(cfg, decode); }
  void score(const ScoreContext& c, std::span<float> out) const override { inner_->score(c, out); }
  void rescore(const ScoreContext& c, std::span<float> candidates) const override { inner_->rescore(c, candidates); }
  bool needs_query_stats() const override { return inner_->needs_query_stats(); }
  bool needs_output_projection() const override { return inner_->needs_output_projection(); }

 protected:
  std::shared_ptr<const TokenScorer> inner_;
};

}  // namespace kvwise
