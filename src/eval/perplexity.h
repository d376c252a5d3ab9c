// Teacher-forced negative log-likelihood of documents: each document starts with BOS and is cut
// into windows of the engine's context; every token after a window's first is predicted.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/forward.h"

namespace kvwise {

struct PerplexityResult {
  double nll_sum = 0;
  int64_t tokens = 0;
  double mean_nll() const { return tokens > 0 ? nll_sum / static_cast<double>(tokens) : 0.0; }
};

// Splits text on lines that equal `separator` (trimmed); empty documents are dropped.
std::vector<std::string> split_documents(const std::string& text, const std::string& separator);

// truncate: score only each document's first window (as llama2.c-style evaluations do) instead of
// continuing in further windows.
PerplexityResult perplexity(Engine& engine, const std::vector<std::string>& docs, bool truncate = false,
                            const std::function<void(size_t)>& on_document_done = {});

// log-softmax of `logits` at `target`.
double log_prob(const float* logits, int n, int32_t target);

}  // namespace kvwise
