// Attention-level fidelity of a policy on one layer (kv-algorithms §15.2): the prompt's K/V and
// queries go through the policy's prefill compression, then queries that come after the prompt attend
// over the full and the compressed cache. Reports the relative L2 error of the attention output and the
// attention mass the kept tokens carry under the full softmax (the quantity Ada-KV's bound is about).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "base/thread_pool.h"
#include "compress/pipeline.h"
#include "model/forward.h"

namespace kvwise {

// One layer's tensors: rows of n_heads*head_dim queries (prompt rows then future rows) and n_kv_heads*
// head_dim keys/values for the prompt, keys post-RoPE.
struct AttentionSample {
  int n_heads = 0, n_kv_heads = 0, head_dim = 0;
  int prompt = 0, future = 0;
  std::vector<float> q, k, v;
};

// Random keys and values with planted "needles": each query head is drawn towards a few needle keys,
// with a concentration that differs from head to head (some heads focused, some diffuse), and the
// future queries follow the same distribution as the prompt's last queries.
AttentionSample synthetic_attention(int prompt, int future, int n_heads, int n_kv_heads, int head_dim, int needles,
                                    uint64_t seed);

// Runs the model over `tokens` (prompt then future tokens) and records layer `layer`.
AttentionSample recorded_attention(Engine& engine, const std::vector<int32_t>& tokens, int prompt, int layer);

struct AttentionErrorCell {
  double relative_error = 0;  // ||o_c - o_f|| / ||o_f|| over all future queries and heads
  double retained_mass = 0;   // mean over future queries and query heads
  double kept_fraction = 0;   // kept slots / prompt slots over KV heads
};

AttentionErrorCell attention_error(ThreadPool& pool, const AttentionSample& s, std::shared_ptr<const KvPolicy> policy);

}  // namespace kvwise
