// The reference: no compression.
#include "compress/pipeline.h"

namespace kvwise {

KVWISE_METHODS(full) {
  registry.add({.name = "full",
                .summary = "no compression (the reference)",
                .paper = "-",
                .group = "reference",
                .budget = BudgetUse::Ignored,
                .build = [](KvPolicy& p, MethodArgs&) { p.full = true; }});
}

}  // namespace kvwise
