// ChunkKV (Liu et al., arXiv:2502.00299): select whole chunks of consecutive tokens by the mean
// score of the inner policy over the chunk, the same chunks in every head of a layer (kvpress's
// ChunkKVPress: head-summed scores, chunks aligned at slot 0). The chunk that the budget cuts
// keeps its later tokens (top-k ties go to the more recent token).
#include <algorithm>

#include "base/error.h"
#include "compress/pipeline.h"
#include "compress/scorer_wrapper.h"

namespace kvwise {

namespace {

class ChunkScorer : public WrappedScorer {
 public:
  ChunkScorer(std::shared_ptr<const TokenScorer> inner, int chunk) : WrappedScorer(std::move(inner)), chunk_(chunk) {}
  std::string name() const override { return "chunk(" + inner_->name() + ")"; }
  void rescore(const ScoreContext& c, std::span<float> cand) const override {
    inner_->rescore(c, cand);
    const int n = static_cast<int>(cand.size());
    for (int i = 0; i < n;) {
      const int slot = c.cand_lo + i;
      const int end = std::min(n, i + chunk_ - slot % chunk_);  // chunk boundaries at multiples of chunk
      double s = 0;
      for (int j = i; j < end; ++j) s += cand[static_cast<size_t>(j)];
      const float mean = static_cast<float>(s / (end - i));
      for (int j = i; j < end; ++j) cand[static_cast<size_t>(j)] = mean;
      i = end;
    }
  }

 private:
  int chunk_;
};

}  // namespace

KVWISE_METHODS(chunkkv) {
  registry.add({.name = "chunkkv",
                .summary = "ChunkKV: whole chunks of tokens by the inner policy's mean chunk score, the same chunks "
                           "in every head (default inner snapkv)",
                .paper = "arXiv:2502.00299",
                .group = "wrapper",
                .params = {ParamSchema::integer("chunk", 20, 1, 1 << 16, "tokens per chunk")},
                .default_inner = "snapkv",
                .budget = BudgetUse::Inherit,
                .build = [](KvPolicy& p, MethodArgs& a) {
                  const int chunk = a.integer("chunk");
                  a.build_inner(p);
                  KV_CHECK(p.needs_budget() && p.scorer && p.residual < 0,
                           "chunkkv wraps a scoring eviction policy (snapkv, knorm, expected-attention, ...), not {}",
                           p.name);
                  p.scorer = std::make_shared<ChunkScorer>(p.scorer, chunk);
                  p.share_heads = true;
                }});
}

}  // namespace kvwise
