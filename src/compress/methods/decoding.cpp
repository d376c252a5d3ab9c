// kvpress's DecodingPress (NVIDIA kvpress, generation/decoding_press.py): every `every` generated
// tokens, compress the cache back to the budget with the inner policy's scores; the freed pages go
// back to the pool. prefill=0 (kvpress's behaviour) keeps the prompt whole until the first due step;
// prefill=1 also compresses the prompt (kvpress's PrefillDecodingPress).
#include "base/error.h"
#include "compress/components.h"
#include "compress/pipeline.h"

namespace kvwise {

KVWISE_METHODS(decoding) {
  registry.add({.name = "decoding",
                .summary = "compress back to the budget every N generated tokens with the inner policy's scores "
                           "(default inner knorm)",
                .paper = "kvpress DecodingPress",
                .group = "wrapper",
                .params = {ParamSchema::integer("every", 10, 1, 1 << 20, "decode steps between compressions"),
                           ParamSchema::integer("prefill", 0, 0, 1, "1: compress the prompt too")},
                .default_inner = "knorm",
                .budget = BudgetUse::Inherit,
                .build = [](KvPolicy& p, MethodArgs& a) {
                  const int every = a.integer("every");
                  const bool prefill = a.integer("prefill") == 1;
                  a.build_inner(p);
                  KV_CHECK(
                      p.needs_budget() && p.scorer && p.residual < 0 && !p.rerotate,
                      "decoding wraps a scoring eviction policy (knorm, keydiff, snapkv, expected-attention, ...), "
                      "not {}",
                      p.name);
                  p.decode = make_evict(every);
                  p.compress_prefill = prefill;
                }});
}

}  // namespace kvwise
