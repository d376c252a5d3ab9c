// SpeCache (arXiv:2503.16163): full KV in a cold tier, a low-bit copy hot, top-k exact pairs
// prefetched by a speculative token.
#include "compress/components.h"
#include "compress/pipeline.h"

namespace kvwise {

KVWISE_METHODS(specache) {
  registry.add(
      {.name = "specache",
       .summary =
           "SpeCache: full KV in a cold tier, low-bit copy hot, top-k exact pairs prefetched by a speculative token",
       .paper = "arXiv:2503.16163",
       .group = "offload",
       .params = {ParamSchema::text("bits", "int2", "precision of the hot copy"),
                  ParamSchema::text("k", "", "precision of keys"), ParamSchema::text("v", "", "precision of values"),
                  ParamSchema::integer("topk", 64, 0, kMaxPolicyWindow),
                  ParamSchema::choice("keys", "channel", {"channel", "token"}),
                  ParamSchema::integer("group", 64, 8, 4096), ParamSchema::integer("residual", 64, 0, kMaxPolicyWindow),
                  ParamSchema::choice("cold", "file", {"file", "memory"}),
                  ParamSchema::text("dir", "", "DIR (CLI only)"), ParamSchema::text("path", "", "FILE (CLI only)"),
                  ParamSchema::choice("prefetch", "auto", {"auto", "thread", "sync"}),
                  ParamSchema::integer("hit_every", 8, 1, 1 << 20)},
       .example = "specache(cold=memory)",
       .budget = BudgetUse::Ignored,
       .build = [](KvPolicy& p, MethodArgs& a) {
         auto c = std::make_shared<SpeCacheConfig>();
         const std::string bits = a.text("bits");
         const std::string k = a.text("k"), v = a.text("v");
         c->low.key = parse_precision(k.empty() ? bits : k);
         c->low.value = parse_precision(v.empty() ? bits : v);
         c->low.key_per_channel = a.choice("keys") == "channel";
         c->low.group = a.integer("group");
         c->residual = a.integer("residual");
         c->top_k = a.integer("topk");
         c->cold_in_file = a.choice("cold") == "file";
         c->dir = a.source().trusted ? a.text("dir") : a.source().cold_dir;
         c->path = a.text("path");
         const std::string prefetch = a.choice("prefetch");
         c->prefetch = prefetch == "thread" ? SpeCacheConfig::Prefetch::Thread
                       : prefetch == "sync" ? SpeCacheConfig::Prefetch::Sync
                                            : SpeCacheConfig::Prefetch::Auto;
         c->hit_every = a.integer("hit_every");
         c->low.validate(c->low.group);
         p.residual = c->residual;
         p.scorer = make_position_scorer();
         p.disposition = make_demote({c->low, std::nullopt, false});
         p.decode = make_fifo();
         p.specache = c;
       }});
}

}  // namespace kvwise
