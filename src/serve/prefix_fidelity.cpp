#include "serve/prefix_fidelity.h"

#include <algorithm>
#include <cmath>

#include "base/error.h"
#include "eval/fidelity.h"

namespace kvwise {

PrefixFidelityCell measure_prefix_fidelity(Engine& engine, const std::vector<std::vector<int32_t>>& segments,
                                           int prefix_tokens, LivePrefixOptions o) {
  const int bt = o.block_tokens;
  KV_CHECK(bt > 0 && prefix_tokens >= bt, "the cached prefix ({} tokens) must hold at least one block of {}",
           prefix_tokens, bt);
  const int P = prefix_tokens / bt * bt;
  const int V = engine.model().config().n_vocab;
  PrefixFidelityCell c;
  c.dtype = o.dtype;
  c.group = o.dtype == "f16" ? 0 : o.group;
  o.memory_blocks = std::max(o.memory_blocks, static_cast<size_t>(P / bt) + 1);
  LivePrefixOptions raw = o;
  raw.dtype = "f16";
  c.block_bytes = LivePrefixCache::block_bytes_for(engine.kv().layout(), o);
  c.block_bytes_raw = LivePrefixCache::block_bytes_for(engine.kv().layout(), raw);
  std::vector<float> a(static_cast<size_t>(V)), b(static_cast<size_t>(V));
  double kl = 0, agree = 0, nll = 0, nll_full = 0;
  int predicted = 0;
  for (const auto& seg : segments) {
    KV_CHECK(static_cast<int>(seg.size()) > P, "a segment of {} tokens is not longer than the cached prefix ({})",
             seg.size(), P);
    const int L = static_cast<int>(seg.size());
    // Reference: the whole segment, every position's logits.
    SeqId s0 = engine.new_sequence();
    const std::vector<float> full = engine.prefill(s0, seg, true);
    engine.free_sequence(s0);
    // Capture the prefix's blocks in a cache of this dtype, then start a new sequence from them.
    LivePrefixCache cache(engine.kv().layout(), o);
    const std::vector<int32_t> prefix(seg.begin(), seg.begin() + P);
    PrefixLease first = cache.acquire(prefix, 0, "", 0.0);
    SeqId s1 = engine.new_sequence();
    if (auto capture = cache.capture_observer(first)) engine.observe(s1, std::move(capture), true);
    engine.prefill(s1, prefix);
    engine.free_sequence(s1);
    cache.release(first, 1.0);
    PrefixLease second = cache.acquire(seg, 0, "", 2.0);
    KV_ASSERT(second.cached_tokens() == P, "the prefix cache gave back {} of {} prefix tokens", second.cached_tokens(),
              P);
    SeqId s2 = engine.new_sequence();
    cache.load(engine.kv(), s2, second);
    const std::vector<float> cached = engine.prefill(s2, std::vector<int32_t>(seg.begin() + P, seg.end()), true);
    engine.free_sequence(s2);
    cache.release(second, 3.0);
    c.cached_tokens = P;
    for (int t = P; t < L; ++t) {
      log_softmax(full.data() + static_cast<size_t>(t) * static_cast<size_t>(V), V, a.data());
      log_softmax(cached.data() + static_cast<size_t>(t - P) * static_cast<size_t>(V), V, b.data());
      const double d = kl_divergence(a.data(), b.data(), V);
      kl += d;
      c.max_kl = std::max(c.max_kl, d);
      agree += (std::max_element(a.begin(), a.end()) - a.begin()) == (std::max_element(b.begin(), b.end()) - b.begin());
      ++c.tokens;
      if (t + 1 < L) {
        const auto next = static_cast<size_t>(seg[static_cast<size_t>(t) + 1]);
        nll_full -= a[next];
        nll -= b[next];
        ++predicted;
      }
    }
  }
  if (c.tokens > 0) {
    c.mean_kl = kl / c.tokens;
    c.top1_agreement = agree / c.tokens;
  }
  if (predicted > 0) {
    c.nll = nll / predicted;
    c.nll_full = nll_full / predicted;
  }
  return c;
}

PrefixPasskeyCell measure_prefix_passkey(Engine& engine, const std::vector<NiahCase>& cases, int answer_tokens,
                                         LivePrefixOptions o) {
  PrefixPasskeyCell c;
  c.dtype = o.dtype;
  for (const NiahCase& k : cases) {
    c.correct_full += run_niah_case(engine, k, nullptr, answer_tokens).correct;
    o.memory_blocks = std::max(o.memory_blocks, k.prompt.size() / static_cast<size_t>(o.block_tokens) + 1);
    LivePrefixCache cache(engine.kv().layout(), o);
    PrefixLease first = cache.acquire(k.prompt, 0, "", 0.0);
    const SeqId s1 = engine.new_sequence();
    if (auto capture = cache.capture_observer(first)) engine.observe(s1, std::move(capture), true);
    engine.prefill(s1, k.prompt);
    engine.free_sequence(s1);
    cache.release(first, 1.0);
    PrefixLease second = cache.acquire(k.prompt, 0, "", 2.0);
    const NiahOutcome out = run_niah_case(engine, k, nullptr, answer_tokens, [&](SeqId seq) {
      cache.load(engine.kv(), seq, second);
      return second.cached_tokens();
    });
    cache.release(second, 3.0);
    c.correct += out.correct;
    c.cached_tokens += second.cached_tokens();
    ++c.cases;
  }
  if (c.cases > 0) c.cached_tokens /= c.cases;
  return c;
}

}  // namespace kvwise
