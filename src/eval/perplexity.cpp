#include "eval/perplexity.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "base/error.h"

namespace kvwise {

std::vector<std::string> split_documents(const std::string& text, const std::string& separator) {
  std::vector<std::string> docs;
  std::string cur, line;
  std::istringstream in(text);
  const auto flush = [&] {
    const bool blank = std::all_of(cur.begin(), cur.end(), [](unsigned char c) { return std::isspace(c); });
    if (!blank) {
      while (!cur.empty() && cur.back() == '\n') cur.pop_back();
      docs.push_back(cur);
    }
    cur.clear();
  };
  while (std::getline(in, line)) {
    std::string trimmed = line;
    while (!trimmed.empty() && std::isspace(static_cast<unsigned char>(trimmed.back()))) trimmed.pop_back();
    if (!separator.empty() && trimmed == separator) {
      flush();
    } else {
      cur += line + "\n";
    }
  }
  flush();
  return docs;
}

double log_prob(const float* logits, int n, int32_t target) {
  const float mx = *std::max_element(logits, logits + n);
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += std::exp(static_cast<double>(logits[i] - mx));
  return static_cast<double>(logits[target] - mx) - std::log(sum);
}

namespace {
// Logits for every position of a window: one prefill, or with a policy a compressed prefill of the
// first part and single-token steps for the rest.
std::vector<float> window_logits(Engine& engine, const std::vector<int32_t>& chunk, const PerplexityOptions& o) {
  const SeqId seq = engine.new_sequence();
  try {
    std::vector<float> logits;
    if (!o.policy || o.policy->full) {
      logits = engine.prefill(seq, chunk, true);
    } else {
      const int n = static_cast<int>(chunk.size());
      const int prompt = std::clamp(static_cast<int>(o.prompt_share * n + 0.5), 1, n);
      attach_policy(engine, seq, o.policy, prompt);
      logits = engine.prefill(seq, std::span<const int32_t>(chunk.data(), static_cast<size_t>(prompt)), true);
      for (int i = prompt; i < n; ++i) {
        const std::vector<float> step = engine.decode(seq, chunk[static_cast<size_t>(i)]);
        logits.insert(logits.end(), step.begin(), step.end());
      }
    }
    engine.free_sequence(seq);
    return logits;
  } catch (...) {
    engine.free_sequence(seq);
    throw;
  }
}
}  // namespace

PerplexityResult perplexity(Engine& engine, const std::vector<std::string>& docs, const PerplexityOptions& o,
                            const std::function<void(size_t)>& on_document_done) {
  const Tokenizer& tok = engine.model().tokenizer();
  const int n_vocab = engine.model().config().n_vocab;
  const size_t window = static_cast<size_t>(engine.ctx());
  KV_CHECK(window >= 2, "perplexity needs a context of at least 2 tokens, not {}", window);
  KV_CHECK(o.prompt_share > 0 && o.prompt_share <= 1, "prompt share {} is outside (0, 1]", o.prompt_share);
  PerplexityResult r;
  for (size_t d = 0; d < docs.size(); ++d) {
    std::vector<int32_t> ids = tok.encode(docs[d], false);
    const int32_t bos = tok.bos() >= 0 ? tok.bos() : (ids.empty() ? 0 : ids[0]);
    for (size_t start = 0; start < ids.size(); start += window - 1) {
      std::vector<int32_t> chunk{bos};
      const size_t end = std::min(ids.size(), start + window - 1);
      chunk.insert(chunk.end(), ids.begin() + static_cast<std::ptrdiff_t>(start),
                   ids.begin() + static_cast<std::ptrdiff_t>(end));
      if (o.policy && !o.policy->full) {
        const int n = static_cast<int>(chunk.size());
        try {
          sequence_shape(*o.policy, std::clamp(static_cast<int>(o.prompt_share * n + 0.5), 1, n));
        } catch (const Error& e) {
          if (r.skip_reason.empty()) r.skip_reason = e.what();
          ++r.skipped_windows;
          if (r.skipped_documents.empty() || r.skipped_documents.back() != d) r.skipped_documents.push_back(d);
          if (o.truncate) break;
          continue;
        }
      }
      const std::vector<float> logits = window_logits(engine, chunk, o);
      for (size_t i = 0; i + 1 < chunk.size(); ++i) {
        r.nll_sum -= log_prob(logits.data() + i * static_cast<size_t>(n_vocab), n_vocab, chunk[i + 1]);
        ++r.tokens;
      }
      if (o.truncate) break;
    }
    if (on_document_done) on_document_done(d + 1);
  }
  return r;
}

}  // namespace kvwise
