// Causal attention of a chunk of queries over one sequence's paged, ragged KV lists (GQA aware).
// Keys are post-RoPE; a query at position p attends to every stored slot with position <= p (and,
// with a sliding window W, > p - W).
#pragma once
#include <cstdint>

#include "base/thread_pool.h"
#include "kv/kv_store.h"

namespace kvwise {

struct AttentionQuery {
  const float* q = nullptr;  // T rows of n_heads * head_dim floats
  int64_t q_stride = 0;
  const int32_t* pos = nullptr;  // T ascending positions
  int T = 0;
  float* out = nullptr;  // T rows of n_heads * head_dim floats
  int64_t out_stride = 0;
  float scale = 0.0f;    // of q.k; 0: 1 / sqrt(head_dim)
  float softcap = 0.0f;  // scores become softcap * tanh(score / softcap) before the softmax; 0: none
  int window = 0;        // sliding window: slots at or before p - window are hidden; 0: none
};

enum class AttentionPath {
  Auto,    // Direct for short chunks (decode), Blas for long ones (prefill)
  Direct,  // own kernels over the pages, split over slot chunks with a log-sum-exp merge
  Blas,    // gather the head's K/V once, sgemm for QKᵀ and PV
};

// x[i] = cap * tanh(x[i] / cap) (Gemma 2's soft-capping of attention scores and logits); cap <= 0: none.
void soft_cap(float* x, size_t n, float cap);

// Updates the sequence's statistic taps when they are enabled.
void attend(ThreadPool& pool, KvStore& store, SeqId seq, int layer, const AttentionQuery& query,
            AttentionPath path = AttentionPath::Auto);

}  // namespace kvwise
