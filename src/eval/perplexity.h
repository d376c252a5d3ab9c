// Teacher-forced negative log-likelihood of documents: each document starts with BOS and is cut
// into windows of the engine's context; every token after a window's first is predicted.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "compress/pipeline.h"
#include "model/forward.h"

namespace kvwise {

struct PerplexityResult {
  double nll_sum = 0;
  int64_t tokens = 0;
  // With a policy: windows whose compressed part cannot hold the policy's protected tokens at that
  // length (the budget below its sinks + window) are skipped, not scored, and counted here.
  int64_t skipped_windows = 0;
  std::vector<size_t> skipped_documents;  // indices of documents with at least one skipped window
  std::string skip_reason;                // the first such window's error
  double mean_nll() const { return tokens > 0 ? nll_sum / static_cast<double>(tokens) : 0.0; }
};

// Splits text on lines that equal `separator` (trimmed); empty documents are dropped.
std::vector<std::string> split_documents(const std::string& text, const std::string& separator);

struct PerplexityOptions {
  // Score only each document's first window (as llama2.c-style evaluations do) instead of continuing
  // in further windows.
  bool truncate = false;
  // With a KV policy, the first prompt_share of each window is prefilled and compressed, the rest is
  // fed one token at a time as in decoding (so decode-time policies act); without one, one prefill.
  std::shared_ptr<const KvPolicy> policy;
  double prompt_share = 0.5;
};

PerplexityResult perplexity(Engine& engine, const std::vector<std::string>& docs, const PerplexityOptions& options = {},
                            const std::function<void(size_t)>& on_document_done = {});

// log-softmax of `logits` at `target`.
double log_prob(const float* logits, int n, int32_t target);

}  // namespace kvwise
