// KVzip (Kim et al., "Query-Agnostic KV Cache Compression with Context Reconstruction",
// arXiv:2505.23416): after the prompt, an unstored pass makes the model repeat its context, and each
// context token keeps the largest attention a repeating query pays it (max over the pass's queries
// and, by default, over the GQA group). Query-agnostic: the scores do not depend on any question, so
// one compression serves every later question (the setting of a reused prefix). The prompt is the
// bundled model's own "repeat" cue by default (a line break: tools/train/tasks.py); instruction
// models want prompt=instruction. Chunking and the softmax over the stored context only are
// approximations of the reference code (compress/reconstruction.h).
#include "compress/components.h"
#include "compress/pipeline.h"

namespace kvwise {

namespace {

class KvzipScorer : public TokenScorer {
 public:
  std::string name() const override { return "kvzip"; }
  // While decoding (decoding(kvzip)) the current query's attention stands in for the pass.
  void add_taps(TapConfig& cfg, bool decode) const override {
    if (decode) cfg.last_row = true;
  }
  void score(const ScoreContext& c, std::span<float> out) const override {
    std::fill(out.begin(), out.end(), 0.0f);
    const std::span<const float> from = c.decode ? std::span<const float>(c.taps.last_row) : c.reconstruction;
    std::copy_n(from.begin(), std::min(from.size(), out.size()), out.begin());
  }
};

}  // namespace

KVWISE_METHODS(kvzip) {
  registry.add({.name = "kvzip",
                .summary = "KVzip: an unstored pass repeats the context; tokens keep the largest attention a "
                           "repeating query pays them (query-agnostic, about 2x prefill)",
                .paper = "arXiv:2505.23416",
                .group = "eviction",
                .params = {ParamSchema::integer("chunk", 128, 1, 1 << 20, "context tokens per reconstruction pass"),
                           ParamSchema::choice("prompt", "newline", {"newline", "instruction"},
                                               "instruction: \"Repeat the previous context exactly.\""),
                           ParamSchema::integer("sinks", 4, 0, kMaxPolicyWindow),
                           ParamSchema::integer("window", 0, 0, kMaxPolicyWindow),
                           ParamSchema::choice("gqa", "max", {"max", "mean", "sum"})},
                .approximation = true,
                .build = [](KvPolicy& p, MethodArgs& a) {
                  auto cfg = std::make_shared<ReconstructionConfig>();
                  cfg->chunk = a.integer("chunk");
                  cfg->prompt = a.choice("prompt") == "newline" ? "\n" : "\n\nRepeat the previous context exactly.\n";
                  p.reconstruction = cfg;
                  p.sinks = a.integer("sinks");
                  p.window = a.integer("window");
                  p.window_explicit = a.given("window");
                  p.reduce = parse_group_reduce(a.choice("gqa"));
                  p.scorer = std::make_shared<KvzipScorer>();
                  // The pass repeats the prompt's tokens: a cached prefix must still be seen in full.
                  p.needs_every_prompt_query = true;
                }});
}

}  // namespace kvwise
