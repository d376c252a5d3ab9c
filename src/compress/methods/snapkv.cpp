// SnapKV (Li et al., arXiv:2404.14469): observation-window attention, pooled.
#include "compress/method_common.h"
#include "compress/pipeline.h"

namespace kvwise {

KVWISE_METHODS(snapkv) {
  registry.add({.name = "snapkv",
                .summary = "observation-window attention, pooled; cache grows during decode",
                .paper = "arXiv:2404.14469",
                .group = "eviction",
                .params = window_scoring_params(32, 5, "avg"),
                .build = [](KvPolicy& p, MethodArgs& a) { apply_window_scoring(p, a); }});
}

}  // namespace kvwise
