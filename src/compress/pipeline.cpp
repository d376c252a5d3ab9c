#include "compress/pipeline.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "base/error.h"
#include "base/timer.h"
#include "model/model.h"
#include "tensor/quant.h"

namespace kvwise {

SequenceShape sequence_shape(const KvPolicy& p, int prompt_tokens) {
  KV_CHECK(prompt_tokens > 0, "empty prompt");
  SequenceShape s;
  s.prompt = prompt_tokens;
  if (p.residual >= 0) {  // uniform quantisation: everything but the recent residual goes low-bit
    s.capacity = p.residual;
    s.window = std::min(p.residual, prompt_tokens);
    s.candidates = prompt_tokens - s.window;
    s.compress = prompt_tokens > p.residual;
    return s;
  }
  s.capacity = p.budget.capacity(prompt_tokens);
  if (p.full) {
    s.capacity = std::max(s.capacity, prompt_tokens);
    s.candidates = s.mean = prompt_tokens;
    return s;
  }
  s.sinks = std::min(p.sinks, prompt_tokens);
  int w = p.window;
  if (p.window_fills)
    w = std::max(0, s.capacity - s.sinks);
  else if (p.window_fraction > 0)
    w = static_cast<int>(std::ceil(p.window_fraction * s.capacity));
  KV_CHECK(!(p.window_explicit && w > prompt_tokens),
           "{}: the window of {} tokens is longer than the prompt of {} tokens (lower window=)", p.name, w,
           prompt_tokens);
  s.window = std::min(w, prompt_tokens - s.sinks);
  KV_CHECK(s.sinks + s.window <= s.capacity,
           "{}: a budget of {} tokens per head cannot hold its {} sink and {} window tokens (raise --kv-budget or "
           "lower sinks=/window=)",
           p.name, s.capacity, s.sinks, s.window);
  s.mean = s.capacity - s.sinks - s.window;
  s.candidates = prompt_tokens - s.sinks - s.window;
  s.compress = prompt_tokens > s.capacity;
  return s;
}

KvCompressor::KvCompressor(std::shared_ptr<const KvPolicy> policy, const KvLayout& layout, int32_t prompt_begin,
                           int prompt_tokens, RopeInfo rope, int max_tokens)
    : policy_(std::move(policy)),
      layout_(layout),
      n_kv_(layout.n_kv_heads),
      group_(layout.n_heads / layout.n_kv_heads),
      prompt_end_(prompt_begin + prompt_tokens),
      rope_(std::move(rope)),
      shape_(sequence_shape(*policy_, prompt_tokens)),
      prompt_begin_(prompt_begin) {
  KV_CHECK(!policy_->full, "the full policy needs no compressor");
  plans_.resize(static_cast<size_t>(layout.n_layers * n_kv_));
  prefill_scores_.resize(plans_.size());
  report_.policy = policy_->spec;
  report_.shape = shape_;
  report_.layer_budget.assign(static_cast<size_t>(layout.n_layers), std::min(shape_.mean, shape_.candidates));
  report_.layer_bytes_before.assign(static_cast<size_t>(layout.n_layers), 0);
  report_.layer_bytes_after.assign(static_cast<size_t>(layout.n_layers), 0);
  report_.head_tokens.assign(static_cast<size_t>(layout.n_layers), std::vector<int>(static_cast<size_t>(n_kv_), 0));
  report_.head_bytes.assign(static_cast<size_t>(layout.n_layers), std::vector<size_t>(static_cast<size_t>(n_kv_), 0));
  // Before any compression a head may grow to the capacity; FIFO keeps sinks + the candidates it has.
  for (HeadPlan& p : plans_)
    p = {shape_.capacity, shape_.sinks, shape_.window, shape_.sinks + std::min(shape_.mean, shape_.candidates)};
  if (policy_->scorer && policy_->scorer->needs_query_stats())
    qstats_.resize(static_cast<size_t>(layout.n_layers * layout.n_heads));
  // A prompt that fits the budget is not compressed: KVzip then needs no reconstruction pass.
  if (policy_->reconstruction && shape_.compress && policy_->compress_prefill) {
    KV_CHECK(max_tokens > 0, "kvzip needs the engine's context length");
    recon_ =
        std::make_unique<ReconstructionPass>(*policy_->reconstruction, layout, prompt_begin, prompt_end_, max_tokens);
  }
  if (policy_->specache) {
    KV_CHECK(max_tokens > 0, "specache needs the engine's context length");
    spec_ = std::make_unique<SpeCache>(*policy_->specache, layout, max_tokens);
    report_.specache = true;
  }
}

TapConfig KvCompressor::prefill_taps() const {
  TapConfig cfg;
  policy_->scorer->add_taps(cfg, false);
  policy_->layers->add_taps(cfg);
  cfg.prompt_end = prompt_end_;
  cfg.window = std::min(cfg.window, shape_.prompt);
  cfg.q_absmax = policy_->balance;
  cfg.enabled = cfg.window > 0 || cfg.last_row || cfg.col_sums || cfg.q_absmax;
  return cfg;
}

std::vector<float> KvCompressor::candidate_scores(const KvStore& kv, SeqId seq, int layer, int head, bool decode,
                                                  int lo, int hi, int budget) {
  const int len = kv.head_len(seq, layer, head);
  const bool taps = kv.tap_config(seq).enabled;
  static const HeadTaps kNoTaps;
  const Pooling pool = decode ? policy_->decode_pooling : policy_->pooling;
  const int kernel = decode ? policy_->decode_kernel : policy_->kernel;
  const HeadKv head_kv(kv, seq, layer, head);
  const OutputProjection* wo = policy_->scorer->needs_output_projection() ? output_projection(layer) : nullptr;
  std::vector<std::vector<float>> rows(static_cast<size_t>(group_));
  std::vector<float> full(static_cast<size_t>(len));
  for (int g = 0; g < group_; ++g) {
    const int qh = head * group_ + g;
    const ScoreContext c{taps ? kv.taps(seq, layer, qh) : kNoTaps,
                         head_kv,
                         layer,
                         qh,
                         head,
                         group_,
                         len,
                         decode,
                         lo,
                         hi,
                         budget,
                         prompt_end_,
                         &rope_,
                         qstats_.empty() ? nullptr : &qstats_[static_cast<size_t>(layer * layout_.n_heads + qh)],
                         wo,
                         recon_ ? recon_->scores(layer, qh) : std::span<const float>{}};
    policy_->scorer->score(c, full);
    rows[static_cast<size_t>(g)].assign(full.begin() + lo, full.begin() + hi);
    if (policy_->pool_first) rows[static_cast<size_t>(g)] = pool1d(rows[static_cast<size_t>(g)], pool, kernel);
  }
  std::vector<float> r = reduce_group(rows, policy_->reduce);
  if (!policy_->pool_first) r = pool1d(r, pool, kernel);
  const ScoreContext head_ctx{kNoTaps, head_kv, layer,  -1,          head,   group_,  len, decode,
                              lo,      hi,      budget, prompt_end_, &rope_, nullptr, wo,  {}};
  policy_->scorer->rescore(head_ctx, r);
  return r;
}

const OutputProjection* KvCompressor::output_projection(int layer) {
  KV_CHECK(wo_source_ != nullptr, "{} needs the model's output projection (attach the policy to an engine)",
           policy_->spec);
  if (wo_layer_ != layer) {
    wo_ = wo_source_(layer, wo_view_.rows, wo_view_.cols);
    wo_layer_ = layer;
    wo_view_.w = wo_.data();
  }
  return &wo_view_;
}

void KvCompressor::set_output_projection(OutputProjectionSource source) {
  wo_source_ = std::move(source);
}

void KvCompressor::share_across_heads(std::vector<std::vector<float>>& scores) {
  if (!policy_->share_heads || scores.size() < 2) return;
  const size_t n = scores[0].size();
  for (const auto& s : scores)
    if (s.size() != n) return;  // heads of different lengths select on their own
  std::vector<float> mean(n, 0.0f);
  for (const auto& s : scores)
    for (size_t j = 0; j < n; ++j) mean[j] += s[j];
  for (float& m : mean) m /= static_cast<float>(scores.size());
  for (auto& s : scores) s = mean;
}

void KvCompressor::accumulate_queries(const Attention& a) {
  const int H = layout_.n_heads, d = layout_.head_dim;
  const int32_t first = prompt_begin_ + shape_.sinks;  // sink queries are outliers (kvpress drops them too)
  std::vector<float> q(static_cast<size_t>(H * d));
  for (int t = 0; t < a.T - a.speculative; ++t) {
    const int32_t pos = a.pos[t];
    if (pos < first || pos >= prompt_end_) continue;
    std::copy_n(a.q + t * a.stride, H * d, q.begin());
    apply_rope(q.data(), H, d, rope_.n_rot, rope_.type, rope_.freq(a.layer),
               -static_cast<float>(pos) * rope_.pos_scale);
    for (int h = 0; h < H; ++h) {
      QueryStats& st = qstats_[static_cast<size_t>(a.layer * H + h)];
      if (st.sum.empty()) {
        st.sum.assign(static_cast<size_t>(d), 0.0);
        st.outer.assign(static_cast<size_t>(d * d), 0.0);
      }
      const float* x = &q[static_cast<size_t>(h * d)];
      ++st.n;
      for (int i = 0; i < d; ++i) {
        st.sum[static_cast<size_t>(i)] += x[i];
        double* row = &st.outer[static_cast<size_t>(i * d)];
        for (int j = 0; j < d; ++j) row[j] += static_cast<double>(x[i]) * x[j];
      }
    }
  }
}

void KvCompressor::apply_layer_budget(KvStore& kv, SeqId seq, int layer, int budget) {
  if (window_layer(layer)) {  // the engine bounds it to its window; nothing to select
    for (int h = 0; h < n_kv_; ++h) {
      report_.head_tokens[static_cast<size_t>(layer)][static_cast<size_t>(h)] = kv.head_len(seq, layer, h);
      report_.head_bytes[static_cast<size_t>(layer)][static_cast<size_t>(h)] = kv.bytes_head(seq, layer, h);
    }
    report_.layer_bytes_after[static_cast<size_t>(layer)] = kv.bytes_layer(seq, layer);
    return;
  }
  const int S = shape_.sinks, W = shape_.window;
  std::vector<std::vector<float>> scores(static_cast<size_t>(n_kv_));
  std::vector<int> len(static_cast<size_t>(n_kv_));
  for (int h = 0; h < n_kv_; ++h) {
    len[static_cast<size_t>(h)] = kv.head_len(seq, layer, h);
    std::vector<float>& cached = prefill_scores_[static_cast<size_t>(layer * n_kv_ + h)];
    if (cached.empty())
      cached = candidate_scores(kv, seq, layer, h, false, S, std::max(S, len[static_cast<size_t>(h)] - W), budget);
    scores[static_cast<size_t>(h)] = cached;
  }
  if (policy_->share_heads) {
    share_across_heads(scores);
    for (int h = 0; h < n_kv_; ++h)
      prefill_scores_[static_cast<size_t>(layer * n_kv_ + h)] = scores[static_cast<size_t>(h)];
  }
  const std::vector<int> split = policy_->heads->split(layer, budget, scores);
  for (int h = 0; h < n_kv_; ++h) {
    const int n = len[static_cast<size_t>(h)];
    std::vector<int> keep;
    for (int i = 0; i < std::min(S, n); ++i) keep.push_back(i);
    const std::vector<int> sel = top_k_indices(scores[static_cast<size_t>(h)], split[static_cast<size_t>(h)]);
    std::vector<float>& cached = prefill_scores_[static_cast<size_t>(layer * n_kv_ + h)];
    std::vector<float> survivors;
    for (int i : sel) {
      keep.push_back(S + i);
      survivors.push_back(cached[static_cast<size_t>(i)]);
    }
    cached = std::move(survivors);
    for (int i = std::max(S, n - W); i < n; ++i) keep.push_back(i);
    policy_->disposition->apply(kv, seq, layer, h, keep, std::min(W, n));
    const int selected = static_cast<int>(sel.size());
    plans_[static_cast<size_t>(layer * n_kv_ + h)] = {S + W + selected, S, W, S + selected};
    report_.head_tokens[static_cast<size_t>(layer)][static_cast<size_t>(h)] = kv.head_len(seq, layer, h);
    report_.head_bytes[static_cast<size_t>(layer)][static_cast<size_t>(h)] = kv.bytes_head(seq, layer, h);
  }
  report_.layer_budget[static_cast<size_t>(layer)] = budget;
  report_.layer_bytes_after[static_cast<size_t>(layer)] = kv.bytes_layer(seq, layer);
}

void KvCompressor::prefill_layer(KvStore& kv, SeqId seq, int layer) {
  const double t0 = now_seconds();
  const int L = layout_.n_layers;
  report_.layer_bytes_before[static_cast<size_t>(layer)] = kv.bytes_layer(seq, layer);
  if (!shape_.compress || !policy_->compress_prefill) {
    for (int h = 0; h < n_kv_ && !window_layer(layer); ++h) {
      // Nothing to select; a stateful disposition still sets the head up (MiKV fixes its balancer).
      const int len = kv.head_len(seq, layer, h);
      std::vector<int> all(static_cast<size_t>(len));
      for (int i = 0; i < len; ++i) all[static_cast<size_t>(i)] = i;
      policy_->disposition->apply(kv, seq, layer, h, all, std::min(shape_.window, len));
      report_.head_tokens[static_cast<size_t>(layer)][static_cast<size_t>(h)] = kv.head_len(seq, layer, h);
      report_.head_bytes[static_cast<size_t>(layer)][static_cast<size_t>(h)] = kv.bytes_head(seq, layer, h);
    }
    report_.layer_bytes_after[static_cast<size_t>(layer)] = kv.bytes_layer(seq, layer);
  } else if (policy_->layers->adaptive()) {
    preference_.push_back(policy_->layers->preference(kv, seq, layer, kv.tap_config(seq).window));
    if (policy_->layers->cascade() || layer == L - 1) {
      const std::vector<int> b = policy_->layers->budgets({L, shape_.mean, shape_.candidates, preference_});
      for (int l = 0; l <= layer; ++l) apply_layer_budget(kv, seq, l, b[static_cast<size_t>(l)]);
    }
  } else {
    if (static_budgets_.empty()) static_budgets_ = policy_->layers->budgets({L, shape_.mean, shape_.candidates, {}});
    apply_layer_budget(kv, seq, layer, static_budgets_[static_cast<size_t>(layer)]);
  }
  if (layer == L - 1) {
    prefill_done_ = true;
    prefill_scores_.clear();
    prefill_scores_.shrink_to_fit();
    for (int l = 0; l < L; ++l) {
      report_.bytes_before += report_.layer_bytes_before[static_cast<size_t>(l)];
      report_.bytes_after += report_.layer_bytes_after[static_cast<size_t>(l)];
    }
  }
  report_.prefill_seconds += now_seconds() - t0;
}

void KvCompressor::decode_layer(KvStore& kv, SeqId seq, int layer) {
  const DecodePolicy& d = *policy_->decode;
  if (!d.due(step_ + 1) || window_layer(layer)) return;
  const double t0 = now_seconds();
  std::vector<std::vector<float>> scores(static_cast<size_t>(n_kv_));
  std::vector<int> lo(static_cast<size_t>(n_kv_), 0);
  for (int h = 0; h < n_kv_; ++h) {
    const HeadPlan& plan = plans_[static_cast<size_t>(layer * n_kv_ + h)];
    const int len = kv.head_len(seq, layer, h);
    if (len <= plan.cap || !d.needs_scores()) continue;
    lo[static_cast<size_t>(h)] = std::min(plan.sinks, len);
    const int hi = std::max(lo[static_cast<size_t>(h)], len - plan.window);
    scores[static_cast<size_t>(h)] =
        candidate_scores(kv, seq, layer, h, true, lo[static_cast<size_t>(h)], hi, plan.cap - plan.sinks - plan.window);
  }
  if (d.needs_scores()) share_across_heads(scores);
  for (int h = 0; h < n_kv_; ++h) {
    const HeadPlan& plan = plans_[static_cast<size_t>(layer * n_kv_ + h)];
    const int len = kv.head_len(seq, layer, h);
    if (len <= plan.cap) continue;
    std::vector<float> all(static_cast<size_t>(len), 0.0f);
    const std::vector<float>& c = scores[static_cast<size_t>(h)];
    std::copy(c.begin(), c.end(), all.begin() + lo[static_cast<size_t>(h)]);
    const std::vector<int> keep = d.select(plan, len, all);
    report_.decode_evicted += len - static_cast<long>(keep.size());
    policy_->disposition->apply(kv, seq, layer, h, keep, std::min(plan.window, len));
  }
  report_.decode_seconds += now_seconds() - t0;
}

void KvCompressor::set_gate(std::shared_ptr<const GateModel> gate) {
  KV_CHECK(policy_->gate != nullptr, "set_gate on a policy without a gate");
  const int L = layout_.n_layers;
  KV_CHECK(gate->n_layers() == L && gate->n_kv() == n_kv_, "the gate does not match the model's shape");
  // Target eviction rate: given, else the budget's complement (so the flags and the cap agree), else
  // the paper's fixed threshold of 0.5.
  double rate = policy_->gate->rate;
  if (rate < 0 && policy_->capped()) rate = std::max(0.0, 1.0 - static_cast<double>(shape_.capacity) / shape_.prompt);
  report_.gate_rate = rate;
  gate_threshold_.resize(static_cast<size_t>(L * n_kv_));
  for (int l = 0; l < L; ++l)
    for (int h = 0; h < n_kv_; ++h) gate_threshold_[static_cast<size_t>(l * n_kv_ + h)] = gate->threshold(l, h, rate);
  gate_scores_.assign(static_cast<size_t>(L * n_kv_), {});
  gate_ = std::make_unique<GateState>(std::move(gate));
}

void KvCompressor::on_hidden(SeqId /*seq*/, int layer, const float* x, int64_t dim, int T) {
  if (!gate_ || layer >= layout_.n_layers) return;
  const double t0 = now_seconds();
  std::vector<float> s(static_cast<size_t>(T * n_kv_));
  gate_->step(layer, x, dim, T, s.data());
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < n_kv_; ++h)
      gate_scores_[static_cast<size_t>(layer * n_kv_ + h)].push_back(s[static_cast<size_t>(t * n_kv_ + h)]);
  const double dt = now_seconds() - t0;
  report_.gate_seconds += dt;
  (prefill_done_ ? report_.decode_seconds : report_.prefill_seconds) += dt;
  report_.gate_cache_bytes = gate_->bytes();
}

void KvCompressor::gate_layer(KvStore& kv, SeqId seq, int layer, int32_t last_pos) {
  const double t0 = now_seconds();
  const bool capped = policy_->capped();
  const int S = shape_.sinks, W = shape_.window, P = kv.layout().page_tokens;
  std::vector<char> kept;
  std::vector<int> keep;
  std::vector<std::pair<float, int>> cand;  // (score, slot) of unprotected tokens the flags keep
  for (int h = 0; h < n_kv_; ++h) {
    const size_t lh = static_cast<size_t>(layer * n_kv_ + h);
    const std::vector<float>& score = gate_scores_[lh];
    const float thr = gate_threshold_[lh];
    const int len = kv.head_len(seq, layer, h);
    const std::vector<uint32_t>& pages = kv.head_pages(seq, layer, h);
    kept.assign(static_cast<size_t>(len), 0);
    cand.clear();
    int n_kept = 0, window_kept = 0;
    for (int i = 0; i < len; ++i) {
      const int32_t pos = kv.page_pos(pages[static_cast<size_t>(i / P)])[i % P];
      const int32_t rel = pos - prompt_begin_;
      // Sinks, the recent window and tokens before this sequence's prompt (a reused prefix, never
      // scored) are always kept; the others keep their slot while their flag says so.
      if (rel < S || rel >= static_cast<int32_t>(score.size())) {
        kept[static_cast<size_t>(i)] = 1;
        ++n_kept;
      } else if (pos > last_pos - W) {
        kept[static_cast<size_t>(i)] = 1;
        ++n_kept;
        ++window_kept;
      } else if (score[static_cast<size_t>(rel)] >= thr) {
        cand.push_back({score[static_cast<size_t>(rel)], i});
      }
    }
    const int room = capped ? std::max(0, shape_.capacity - n_kept) : INT32_MAX;
    if (static_cast<int>(cand.size()) > room) {  // the hard budget: top-k of the gate's scores
      std::nth_element(cand.begin(), cand.begin() + room, cand.end(), [](const auto& a, const auto& b) {
        return a.first > b.first || (a.first == b.first && a.second < b.second);
      });
      cand.resize(static_cast<size_t>(room));
    }
    n_kept += static_cast<int>(cand.size());
    if (n_kept == len) continue;
    for (const auto& c : cand) kept[static_cast<size_t>(c.second)] = 1;
    keep.clear();  // in slot order, without a sort
    for (int i = 0; i < len; ++i)
      if (kept[static_cast<size_t>(i)]) keep.push_back(i);
    report_.gate_evicted += len - static_cast<long>(keep.size());
    if (prefill_done_) report_.decode_evicted += len - static_cast<long>(keep.size());
    policy_->disposition->apply(kv, seq, layer, h, keep, window_kept);
  }
  (prefill_done_ ? report_.decode_seconds : report_.prefill_seconds) += now_seconds() - t0;
}

void KvCompressor::after_attention(KvStore& kv, SeqId seq, const Attention& a) {
  if (gate_) {
    // The gate acts after every prefill chunk and decode step, so evicted prompt tokens are already
    // invisible to later chunks of the prompt (exactly the paper's masking at --prefill-chunk 1).
    gate_layer(kv, seq, a.layer, a.pos[a.T - 1]);
    if (!prefill_done_ && a.pos[a.T - 1] == prompt_end_ - 1) {
      const size_t l = static_cast<size_t>(a.layer);
      report_.layer_bytes_before[l] =
          kv.bytes_per_token_full() / static_cast<size_t>(layout_.n_layers) * static_cast<size_t>(shape_.prompt);
      report_.layer_bytes_after[l] = kv.bytes_layer(seq, a.layer);
      for (int h = 0; h < n_kv_; ++h) {
        report_.head_tokens[l][static_cast<size_t>(h)] = kv.head_len(seq, a.layer, h);
        report_.head_bytes[l][static_cast<size_t>(h)] = kv.bytes_head(seq, a.layer, h);
      }
      if (a.layer == layout_.n_layers - 1) {
        prefill_done_ = true;
        for (int i = 0; i < layout_.n_layers; ++i) {
          report_.bytes_before += report_.layer_bytes_before[static_cast<size_t>(i)];
          report_.bytes_after += report_.layer_bytes_after[static_cast<size_t>(i)];
        }
      }
    }
    return;
  }
  if (recon_ && recon_->running()) {  // the reconstruction pass: score, store nothing
    recon_->accumulate(kv, seq, a);
    return;
  }
  if (recon_ && !prefill_done_) {  // KVzip compresses after its pass, not layer by layer
    if (a.pos[a.T - 1] == prompt_end_ - 1) ++recon_layers_;
    return;
  }
  if (!prefill_done_) {
    if (!qstats_.empty()) accumulate_queries(a);
    if (a.pos[a.T - 1] == prompt_end_ - 1) {
      if (spec_) spec_->capture(kv, seq, a.layer);  // the full-precision copy, before anything is demoted
      prefill_layer(kv, seq, a.layer);
    }
    return;
  }
  if (spec_) spec_->capture(kv, seq, a.layer);
  decode_layer(kv, seq, a.layer);
  if (spec_) {
    const double t0 = now_seconds();
    spec_->after_layer(kv, seq, a.layer, a.T, a.speculative, a.pool);
    report_.decode_seconds += now_seconds() - t0;
  }
}

void KvCompressor::before_attention(KvStore& kv, SeqId seq, int layer) {
  if (!spec_ || !prefill_done_) return;
  const double t0 = now_seconds();
  spec_->install(kv, seq, layer);
  report_.decode_seconds += now_seconds() - t0;
}

void KvCompressor::on_guess(bool hit) {
  if (spec_) spec_->on_guess(hit);
}

void KvCompressor::switch_taps(KvStore& kv, SeqId seq) {
  // From now on only the decode-time statistics (if any) are recorded. H2O keeps its running sums.
  taps_switched_ = true;
  TapConfig cfg;
  if (policy_->decode->needs_scores()) policy_->scorer->add_taps(cfg, true);
  cfg.segment_rows = spec_ != nullptr;
  cfg.enabled = cfg.last_row || cfg.col_sums || cfg.segment_rows;
  const TapConfig& cur = kv.tap_config(seq);
  if (cfg.enabled != cur.enabled || cfg.last_row != cur.last_row || cfg.col_sums != cur.col_sums ||
      cfg.segment_rows != cur.segment_rows || cur.window > 0)
    kv.set_taps(seq, cfg);
}

void KvCompressor::on_tokens(SeqId /*seq*/, std::span<const int32_t> tokens, int32_t first_pos) {
  if (recon_ && !recon_->started()) recon_->add_context(tokens, first_pos);
}

void KvCompressor::set_reconstruction_prompt(std::vector<int32_t> tokens) {
  if (recon_) recon_->set_prompt(std::move(tokens));  // none when the prompt is not compressed
}

std::vector<int32_t> KvCompressor::scoring_pass(KvStore& kv, SeqId seq) {
  if (!recon_ || prefill_done_ || !recon_->started()) return {};
  std::vector<int32_t> t = recon_->next();
  if (!t.empty()) return t;
  // Every chunk has run: compress each layer by the reconstruction scores, as a prefill would.
  report_.prefill_seconds += recon_->seconds();
  for (int l = 0; l < layout_.n_layers; ++l) prefill_layer(kv, seq, l);
  switch_taps(kv, seq);
  return {};
}

// Sliding-window layers are trimmed by the engine after the observers ran: their part of the report is
// taken once the prompt's last step is over.
void KvCompressor::report_window_layers(KvStore& kv, SeqId seq) {
  if (window_layers_.empty()) return;
  report_.bytes_after = 0;
  for (int l = 0; l < layout_.n_layers; ++l) {
    if (window_layer(l)) {
      for (int h = 0; h < n_kv_; ++h) {
        report_.head_tokens[static_cast<size_t>(l)][static_cast<size_t>(h)] = kv.head_len(seq, l, h);
        report_.head_bytes[static_cast<size_t>(l)][static_cast<size_t>(h)] = kv.bytes_head(seq, l, h);
      }
      report_.layer_bytes_after[static_cast<size_t>(l)] = kv.bytes_layer(seq, l);
    }
    report_.bytes_after += report_.layer_bytes_after[static_cast<size_t>(l)];
  }
}

void KvCompressor::after_forward(KvStore& kv, SeqId seq) {
  if (recon_ && recon_->running()) return;  // the reconstruction pass's own step
  if (recon_ && !prefill_done_) {
    if (recon_layers_ == layout_.n_layers && !recon_->started()) recon_->start();
    return;
  }
  if (!prefill_done_) return;
  if (!taps_switched_) {
    switch_taps(kv, seq);
    report_window_layers(kv, seq);
  } else {
    ++step_;
    report_.decode_steps = step_;
  }
  if (policy_->rerotate) rerotate(kv, seq);
  if (spec_) report_.spec = spec_->stats();
}

void KvCompressor::rerotate(KvStore& kv, SeqId seq) {
  const double t0 = now_seconds();
  std::vector<float> k(static_cast<size_t>(rope_.head_dim));
  int len0 = -1;
  for (int l = 0; l < layout_.n_layers; ++l)
    for (int h = 0; h < n_kv_; ++h) {
      const int len = kv.head_len(seq, l, h);
      KV_CHECK(len0 < 0 || len == len0, "re-rotation needs equal cache lengths in every head");
      len0 = len;
      for (int i = 0; i < len; ++i) {
        const int32_t p = kv.slot_position(seq, l, h, i);
        if (p == i) continue;
        kv.read_slot(seq, l, h, i, k.data(), nullptr);
        apply_rope(k.data(), 1, rope_.head_dim, rope_.n_rot, rope_.type, rope_.freq(l),
                   static_cast<float>(i - p) * rope_.pos_scale);
        kv.rewrite_key(seq, l, h, i, k.data(), i);
      }
    }
  if (len0 >= 0) kv.set_next_position(seq, len0);
  (prefill_done_ && step_ == 0 ? report_.prefill_seconds : report_.decode_seconds) += now_seconds() - t0;
}

std::string gate_file(const KvPolicy& policy, const std::string& model_path) {
  KV_CHECK(policy.gate != nullptr, "{} is not a gate policy", policy.spec);
  return policy.gate->file.empty() ? GateModel::default_path(model_path) : policy.gate->file;
}

std::shared_ptr<KvCompressor> attach_policy(Engine& engine, SeqId seq, std::shared_ptr<const KvPolicy> policy,
                                            int prompt_tokens) {
  if (!policy || policy->full) return nullptr;
  const ModelConfig& c = engine.model().config();
  KV_CHECK(!policy->rerotate || !c.has_window_layers(),
           "{}: re-rotation to cache-relative positions is not supported on a model with sliding-window layers "
           "({}); drop rerotate=1",
           policy->spec, c.arch);
  KV_CHECK(!(policy->specache || policy->gate) || !c.has_window_layers(),
           "{}: SpeCache and Attention-Gate are not supported on a model with sliding-window layers ({})", policy->spec,
           c.arch);
  RopeInfo rope{c.head_dim, c.n_rot, c.rope_type, {}, 1.0f, {}};
  for (const LayerRope& r : engine.rope()) rope.layer_inv_freq.push_back(r.inv_freq);
  auto comp = std::make_shared<KvCompressor>(policy, engine.kv().layout(), engine.kv().next_position(seq),
                                             prompt_tokens, std::move(rope), engine.ctx());
  if (c.has_window_layers()) {
    std::vector<char> window(static_cast<size_t>(c.n_layers), 0);
    for (int l = 0; l < c.n_layers; ++l) window[static_cast<size_t>(l)] = c.layers[static_cast<size_t>(l)].window > 0;
    comp->set_window_layers(std::move(window));
  }
  if (policy->scorer && policy->scorer->needs_output_projection()) {
    const Model& model = engine.model();
    comp->set_output_projection([&model](int layer, int64_t& rows, int64_t& cols) {
      const WeightView& w = model.weights().layers[static_cast<size_t>(layer)].wo;
      rows = w.rows;
      cols = w.cols;
      std::vector<float> out(static_cast<size_t>(w.rows * w.cols));
      for (int64_t r = 0; r < w.rows; ++r)
        dequantize_row(w.type, w.data + static_cast<size_t>(r) * w.row_bytes, &out[static_cast<size_t>(r * w.cols)],
                       w.cols);
      return out;
    });
  }
  if (policy->reconstruction) {
    comp->set_reconstruction_prompt(engine.model().tokenizer().encode(policy->reconstruction->prompt, false));
  }
  if (policy->gate) {
    comp->set_gate(GateModel::load_cached(gate_file(*policy, engine.model().file().path()), c));
  }
  engine.kv().set_taps(seq, comp->prefill_taps());
  engine.observe(seq, comp);
  return comp;
}

}  // namespace kvwise
