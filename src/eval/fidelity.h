// Fidelity of compressed KV caches against the full cache, teacher-forced: a prefix of real text is
// prefilled (and compressed by the policy), then the following tokens are fed one at a time exactly as
// in decoding. Every step's next-token distribution is compared with the full cache's.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "compress/pipeline.h"
#include "model/forward.h"

namespace kvwise {

struct FidelityOptions {
  int prefix = 384;       // tokens prefilled (BOS included) before compression
  int continuation = 64;  // teacher-forced tokens after the prefix
  int segments = 4;       // text segments (evenly spaced over the text) averaged
  // Query-agnostic protocol: the policy compresses the first prefix - question tokens, and the last
  // `question` tokens of the prefix are prefilled into the compressed cache afterwards (they stand for
  // the question of a reused context). 0: the policy compresses the whole prefix (query-aware).
  int question = 0;
};

struct FidelityCell {
  std::string policy, budget;
  double mean_kl = 0;         // KL(full || policy) in nats, mean over predicted tokens
  double top1_agreement = 0;  // share of steps whose argmax equals the full cache's
  double nll = 0, nll_full = 0;
  double nll_delta() const { return nll - nll_full; }
  double hot_bytes = 0;         // mean over segments, right after prefill compression
  double hot_bytes_end = 0;     // mean over segments, after the continuation
  double full_bytes = 0;        // the full cache after prefill
  double compress_seconds = 0;  // mean per segment: selection after prefill + decode-time eviction
  int tokens = 0;               // predicted tokens per cell
};

// log(softmax(logits)) over n values.
void log_softmax(const float* logits, int n, float* out);
// KL(p || q) in nats of two log-probability rows (clamped at 0 against rounding).
double kl_divergence(const float* log_p, const float* log_q, int n);

// Token segments [BOS] + text[start..start+prefix-1+continuation] taken evenly over `text`.
std::vector<std::vector<int32_t>> fidelity_segments(const std::vector<int32_t>& text, int32_t bos,
                                                    const FidelityOptions& o);

class FidelityRunner {
 public:
  FidelityRunner(Engine& engine, std::vector<std::vector<int32_t>> segments, const FidelityOptions& o);
  // Measures one policy (its budget is part of the policy); the full-cache reference is computed once.
  FidelityCell run(std::shared_ptr<const KvPolicy> policy);

 private:
  struct Pass {
    std::vector<float> log_probs;  // continuation x n_vocab
    double nll = 0;
    size_t bytes_prefill = 0, bytes_end = 0;
    double compress_seconds = 0;
  };
  Pass teacher_force(const std::vector<int32_t>& seg, std::shared_ptr<const KvPolicy> policy);

  Engine& engine_;
  std::vector<std::vector<int32_t>> segments_;
  FidelityOptions o_;
  std::vector<Pass> reference_;
};

}  // namespace kvwise
