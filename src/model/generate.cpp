#include "model/generate.h"

#include <algorithm>

#include "base/error.h"
#include "base/timer.h"

namespace kvwise {

GenerateResult generate(Engine& engine, const std::vector<int32_t>& prompt, int n_predict, Sampler& sampler,
                        const std::function<void(const std::string&)>& on_text,
                        const std::function<void(SeqId)>& on_sequence) {
  return generate(engine, prompt, n_predict, sampler, GenerateHooks{on_text, on_sequence, {}, false});
}

GenerateResult generate(Engine& engine, const std::vector<int32_t>& prompt, int n_predict, Sampler& sampler,
                        const GenerateHooks& hooks) {
  const auto& on_text = hooks.on_text;
  KV_CHECK(!prompt.empty(), "the prompt is empty (and the model adds no BOS token)");
  KV_CHECK(static_cast<int>(prompt.size()) <= engine.ctx(), "the prompt has {} tokens, more than the context of {}",
           prompt.size(), engine.ctx());
  const Tokenizer& tok = engine.model().tokenizer();
  const int n_vocab = engine.model().config().n_vocab;
  GenerateResult r;
  r.prompt_tokens = prompt;
  const SeqId seq = engine.new_sequence();
  PagePool& pages = engine.kv().pool();
  const size_t others = pages.bytes_in_use();  // other sequences' pages (the peak is measured above them)
  pages.reset_peak();
  try {
    if (hooks.on_sequence) hooks.on_sequence(seq);
    double t0 = now_seconds();
    std::vector<float> logits = engine.prefill(seq, prompt);
    r.prefill_seconds = now_seconds() - t0;
    r.kv_bytes_prefill = engine.kv().bytes_sequence(seq);
    // Text is decoded over prompt + generated tokens so SentencePiece spacing stays right; the new
    // suffix is what gets emitted.
    std::vector<int32_t> all = prompt;
    std::string shown = tok.decode(all);
    t0 = now_seconds();
    for (int i = 0; i < n_predict; ++i) {
      if (hooks.on_logits) hooks.on_logits(logits.data(), n_vocab);
      const int32_t next = sampler.sample(logits.data(), n_vocab);
      if (!hooks.ignore_eos && tok.is_end_of_generation(next)) {
        r.stopped_at_eos = true;
        break;
      }
      r.tokens.push_back(next);
      all.push_back(next);
      const std::string text = tok.decode(all);
      if (text.size() > shown.size() && on_text) on_text(text.substr(shown.size()));
      shown = text;
      if (i + 1 == n_predict || engine.kv().next_position(seq) >= engine.ctx()) break;
      logits = engine.decode(seq, next);
    }
    r.decode_seconds = now_seconds() - t0;
    r.text = tok.decode(all).substr(tok.decode(prompt).size());
    r.kv_bytes = engine.kv().bytes_sequence(seq);
    r.kv_bytes_peak = pages.peak_bytes() > others ? pages.peak_bytes() - others : 0;
  } catch (...) {
    engine.free_sequence(seq);
    throw;
  }
  engine.free_sequence(seq);
  return r;
}

}  // namespace kvwise
