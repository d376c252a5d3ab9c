// Text generation on one sequence: prefill the prompt, then sample and decode token by token.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "model/forward.h"
#include "model/sampler.h"

namespace kvwise {

struct GenerateResult {
  std::vector<int32_t> prompt_tokens;
  std::vector<int32_t> tokens;  // generated
  std::string text;             // generated text
  double prefill_seconds = 0;
  double decode_seconds = 0;
  size_t kv_bytes = 0;          // KV bytes the sequence held at the end
  size_t kv_bytes_peak = 0;     // most KV bytes held at once, prefill included (pool high-water mark)
  size_t kv_bytes_prefill = 0;  // KV bytes right after prefill (after any compression)
  bool stopped_at_eos = false;
};

struct GenerateHooks {
  // Each new piece of generated text as soon as it is final (for streaming).
  std::function<void(const std::string&)> on_text;
  // Once the sequence exists, before the prompt (to attach a KV policy).
  std::function<void(SeqId)> on_sequence;
  // The logits each generated token is sampled from (n_vocab floats), before sampling.
  std::function<void(const float* logits, int n_vocab)> on_logits;
  bool ignore_eos = false;  // keep generating past end-of-generation tokens (comparisons, benchmarks)
};

GenerateResult generate(Engine& engine, const std::vector<int32_t>& prompt, int n_predict, Sampler& sampler,
                        const GenerateHooks& hooks);
// on_text and on_sequence as in GenerateHooks.
GenerateResult generate(Engine& engine, const std::vector<int32_t>& prompt, int n_predict, Sampler& sampler,
                        const std::function<void(const std::string&)>& on_text = {},
                        const std::function<void(SeqId)>& on_sequence = {});

}  // namespace kvwise
