#include "eval/fidelity.h"

#include <algorithm>
#include <cmath>

#include "base/error.h"

namespace kvwise {

void log_softmax(const float* logits, int n, float* out) {
  const float mx = *std::max_element(logits, logits + n);
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += std::exp(static_cast<double>(logits[i] - mx));
  const float lse = mx + static_cast<float>(std::log(sum));
  for (int i = 0; i < n; ++i) out[i] = logits[i] - lse;
}

double kl_divergence(const float* a, const float* b, int n) {
  double d = 0;
  for (int i = 0; i < n; ++i) d += std::exp(static_cast<double>(a[i])) * (a[i] - b[i]);
  return std::max(0.0, d);
}

std::vector<std::vector<int32_t>> fidelity_segments(const std::vector<int32_t>& text, int32_t bos,
                                                    const FidelityOptions& o) {
  KV_CHECK(o.prefix >= 2 && o.continuation >= 1 && o.segments >= 1, "fidelity: bad prefix/continuation/segments");
  const size_t need = static_cast<size_t>(o.prefix - 1 + o.continuation);
  KV_CHECK(text.size() >= need, "fidelity: the text has {} tokens, fewer than prefix + continuation = {}", text.size(),
           need + 1);
  std::vector<std::vector<int32_t>> segs;
  const size_t span = text.size() - need;
  for (int s = 0; s < o.segments; ++s) {
    const size_t start = o.segments == 1 ? 0 : span * static_cast<size_t>(s) / static_cast<size_t>(o.segments - 1);
    std::vector<int32_t> seg{bos};
    seg.insert(seg.end(), text.begin() + static_cast<std::ptrdiff_t>(start),
               text.begin() + static_cast<std::ptrdiff_t>(start + need));
    segs.push_back(std::move(seg));
  }
  return segs;
}

FidelityRunner::FidelityRunner(Engine& engine, std::vector<std::vector<int32_t>> segments, const FidelityOptions& o)
    : engine_(engine), segments_(std::move(segments)), o_(o) {
  KV_CHECK(o.question >= 0 && o.question < o.prefix,
           "fidelity: the question of {} tokens must be shorter than the prefix of {}", o.question, o.prefix);
  KV_CHECK(o.prefix + o.continuation <= engine.ctx() + 1, "fidelity: prefix + continuation = {} exceeds the context {}",
           o.prefix + o.continuation, engine.ctx());
  for (const auto& seg : segments_) reference_.push_back(teacher_force(seg, nullptr));
}

FidelityRunner::Pass FidelityRunner::teacher_force(const std::vector<int32_t>& seg,
                                                   std::shared_ptr<const KvPolicy> policy) {
  const int V = engine_.model().config().n_vocab;
  const int P = o_.prefix, M = o_.continuation;
  Pass pass;
  pass.log_probs.resize(static_cast<size_t>(M) * static_cast<size_t>(V));
  const SeqId seq = engine_.new_sequence();
  try {
    const int C = P - o_.question;  // tokens the policy compresses
    std::shared_ptr<KvCompressor> comp = attach_policy(engine_, seq, policy, C);
    std::vector<float> logits = engine_.prefill(seq, std::span<const int32_t>(seg.data(), static_cast<size_t>(C)));
    if (C < P) logits = engine_.prefill(seq, std::span<const int32_t>(seg.data() + C, static_cast<size_t>(P - C)));
    // The gate's own K/V cache is memory the policy needs: it counts as hot bytes.
    const auto gate_bytes = [&] { return comp ? comp->report().gate_cache_bytes : size_t{0}; };
    pass.bytes_prefill = engine_.kv().bytes_sequence(seq) + gate_bytes();
    for (int t = 0; t < M; ++t) {
      float* lp = pass.log_probs.data() + static_cast<size_t>(t) * static_cast<size_t>(V);
      log_softmax(logits.data(), V, lp);
      const int32_t target = seg[static_cast<size_t>(P + t)];
      pass.nll -= lp[target];
      if (t + 1 < M) logits = engine_.decode(seq, target);
    }
    pass.bytes_end = engine_.kv().bytes_sequence(seq) + gate_bytes();
    if (comp) pass.compress_seconds = comp->report().prefill_seconds + comp->report().decode_seconds;
  } catch (...) {
    engine_.free_sequence(seq);
    throw;
  }
  engine_.free_sequence(seq);
  return pass;
}

FidelityCell FidelityRunner::run(std::shared_ptr<const KvPolicy> policy) {
  const int V = engine_.model().config().n_vocab;
  FidelityCell c;
  c.policy = policy->spec;
  c.budget = policy->budget_label();
  double kl = 0, agree = 0;
  for (size_t s = 0; s < segments_.size(); ++s) {
    const Pass& ref = reference_[s];
    const Pass p = policy->full ? ref : teacher_force(segments_[s], policy);
    for (int t = 0; t < o_.continuation; ++t) {
      const float* a = ref.log_probs.data() + static_cast<size_t>(t) * static_cast<size_t>(V);
      const float* b = p.log_probs.data() + static_cast<size_t>(t) * static_cast<size_t>(V);
      kl += kl_divergence(a, b, V);
      agree += (std::max_element(a, a + V) - a) == (std::max_element(b, b + V) - b);
    }
    c.nll += p.nll;
    c.nll_full += ref.nll;
    c.hot_bytes += static_cast<double>(p.bytes_prefill);
    c.hot_bytes_end += static_cast<double>(p.bytes_end);
    c.full_bytes += static_cast<double>(ref.bytes_prefill);
    c.compress_seconds += p.compress_seconds;
  }
  const double n = static_cast<double>(segments_.size());
  c.tokens = static_cast<int>(segments_.size()) * o_.continuation;
  c.mean_kl = kl / c.tokens;
  c.top1_agreement = agree / c.tokens;
  c.nll /= c.tokens;
  c.nll_full /= c.tokens;
  c.hot_bytes /= n;
  c.hot_bytes_end /= n;
  c.full_bytes /= n;
  c.compress_seconds /= n;
  return c;
}

}  // namespace kvwise
