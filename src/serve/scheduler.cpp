#include "serve/scheduler.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <string_view>

#include "base/error.h"
#include "base/timer.h"
#include "base/utf8.h"
#include "prefix/block_hash.h"

namespace kvwise {

namespace {
// A failure inside the engine is the server's, not the client's: it is logged for the operator.
void log_internal_error(const std::string& where, const std::exception& e) {
  std::fprintf(stderr, "kvwise serve: error in %s: %s\n", where.c_str(), e.what());
}
}  // namespace

struct Scheduler::Active {
  uint64_t id = 0;
  ServeRequest req;
  Sampler sampler;
  SeqId seq = -1;
  size_t prefilled = 0;
  int32_t next_token = 0;    // the token the next decode step feeds
  std::vector<int32_t> all;  // prompt + generated, for incremental detokenization
  std::string shown;
  size_t prompt_text_size = 0;
  size_t emitted = 0;                  // characters of generated text handed to on_token
  size_t stop_at = std::string::npos;  // where a stop string starts in the generated text
  std::atomic<bool> cancelled{false};
  bool done = false;
  double t_submit = 0, t_admit = 0, t_first = 0;
  PrefixLease lease;
  std::shared_ptr<KvCompressor> compressor;
  Completion result;

  Active(uint64_t id_, ServeRequest r) : id(id_), req(std::move(r)), sampler(req.sampling) {}
};

Scheduler::Scheduler(Engine& engine, const SchedulerOptions& options) : engine_(engine), opt_(options) {
  KV_CHECK(opt_.max_batch > 0 && opt_.max_queue >= 0 && opt_.prefill_chunk > 0, "bad scheduler options");
  thread_ = std::thread([this] { run(); });
}

Scheduler::~Scheduler() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

uint64_t Scheduler::submit(ServeRequest r) {
  KV_CHECK(!r.prompt.empty(), "the prompt is empty");
  KV_CHECK(r.max_tokens >= 1 || (r.max_tokens == 0 && r.prompt_logprobs),
           "max_tokens must be at least 1 (0 only to score the prompt: echo with logprobs)");
  KV_CHECK(r.logprobs <= 20, "logprobs must be at most 20");
  for (const std::string& s : r.stop) KV_CHECK(!s.empty(), "a stop string is empty");
  const long need = static_cast<long>(r.prompt.size()) + r.max_tokens;
  KV_CHECK(static_cast<long>(r.prompt.size()) <= engine_.ctx(), "the prompt has {} tokens, more than the context of {}",
           r.prompt.size(), engine_.ctx());
  const bool rerotates = r.policy && r.policy->rerotate;
  KV_CHECK(need <= engine_.ctx() + 1 || rerotates,
           "prompt ({} tokens) + max_tokens ({}) exceeds the context of {} tokens", r.prompt.size(), r.max_tokens,
           engine_.ctx());
  const bool compresses = r.policy && !r.policy->full &&
                          sequence_shape(*r.policy, static_cast<int>(r.prompt.size())).compress;  // validates
  // KVzip's reconstruction pass runs after the prompt: a prompt that leaves it no position is the
  // request's fault (400), said now rather than at admission.
  if (compresses && r.policy->reconstruction && r.policy->compress_prefill) {
    const size_t cue = engine_.model().tokenizer().encode(r.policy->reconstruction->prompt, false).size();
    KV_CHECK(r.prompt.size() + cue + 1 <= static_cast<size_t>(engine_.ctx()),
             "kvzip: a prompt of {} tokens leaves no room in the context of {} for its reconstruction pass",
             r.prompt.size(), engine_.ctx());
  }
  const int n_vocab = engine_.model().config().n_vocab;
  for (int32_t t : r.prompt) KV_CHECK(t >= 0 && t < n_vocab, "token id {} is outside the vocabulary", t);
  std::lock_guard<std::mutex> lk(mu_);
  // max_queue counts requests that wait for a batch slot: a request that a free slot will take at
  // once never counts against it (max_queue 0: refuse only while every slot is busy).
  const int free_slots = std::max(0, opt_.max_batch - running_count_);
  if (static_cast<int>(queue_.size()) >= opt_.max_queue + free_slots) {
    ++stats_.rejected;
    throw QueueFull(fmt::format("the server is busy: {} requests are waiting", queue_.size()));
  }
  auto a = std::make_shared<Active>(next_id_++, std::move(r));
  a->t_submit = now_seconds();
  a->all = a->req.prompt;
  a->shown = engine_.model().tokenizer().decode(a->req.prompt);  // pieces are what comes after the prompt
  a->prompt_text_size = a->shown.size();
  a->result.prompt_tokens = static_cast<int>(a->req.prompt.size());
  a->result.prompt = a->req.prompt;
  queue_.push_back(a);
  live_[a->id] = a;
  ++stats_.requests;
  stats_.queued = static_cast<int>(queue_.size());
  cv_.notify_all();
  return a->id;
}

void Scheduler::cancel(uint64_t id) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = live_.find(id);
  if (it != live_.end()) it->second->cancelled = true;
  cv_.notify_all();
}

SchedulerStats Scheduler::stats() const {
  std::lock_guard<std::mutex> lk(mu_);
  return stats_;  // kv_bytes is refreshed by the scheduler thread after every step
}

void Scheduler::wait_idle() {
  std::unique_lock<std::mutex> lk(mu_);
  idle_cv_.wait(lk, [&] { return queue_.empty() && running_count_ == 0; });
}

// Hot KV bytes as the store counts them: pages, low-precision segments and exact rows. The store is
// the scheduler thread's; the HTTP threads read this copy.
void Scheduler::refresh_kv_bytes() {
  const size_t b = engine_.kv().bytes_total();
  std::lock_guard<std::mutex> lk(mu_);
  stats_.kv_bytes = b;
}

void Scheduler::finish(Active& a, const std::string& reason, const std::string& error) {
  if (a.done) return;
  a.done = true;
  if (a.seq >= 0) {
    engine_.free_sequence(a.seq);
    a.seq = -1;
    refresh_kv_bytes();  // before on_done: the client may use the engine once it has its answer (tests do)
  }
  const double now = now_seconds();
  if (opt_.prefix_cache) opt_.prefix_cache->release(a.lease, now);
  if (a.compressor)
    a.result.compression_seconds = a.compressor->report().prefill_seconds + a.compressor->report().decode_seconds;
  a.result.finish_reason = reason;
  a.result.error = error;
  a.result.seconds = now - a.t_submit;
  a.result.queue_seconds = (a.t_admit > 0 ? a.t_admit : now) - a.t_submit;
  a.result.ttft_seconds = a.t_first > 0 ? a.t_first - a.t_submit : 0;
  std::string raw = a.shown.substr(std::min(a.shown.size(), a.prompt_text_size));
  if (a.stop_at != std::string::npos) raw.resize(a.stop_at);
  // Release text held back for a possible stop string or an unfinished character.
  if (reason != "cancelled" && reason != "error" && raw.size() > a.emitted && a.req.on_token)
    a.req.on_token(-1, utf8_sanitize(std::string_view(raw).substr(a.emitted)));
  a.result.text = utf8_sanitize(raw);
  {
    std::lock_guard<std::mutex> lk(mu_);
    live_.erase(a.id);
    if (reason == "cancelled")
      ++stats_.cancelled;
    else if (reason == "error")
      ++stats_.failed;
    else
      ++stats_.completed;
    stats_.generated_tokens += static_cast<long>(a.result.tokens.size());
    stats_.compression_seconds += a.result.compression_seconds;
  }
  if (a.req.on_done) a.req.on_done(a.result);
}

// Loads the prompt's cached leading blocks into the new sequence (its prefill starts after them) and
// lets the blocks it completes be captured before the compressor changes them.
void Scheduler::admit_cached_prefix(Active& a) {
  LivePrefixCache& cache = *opt_.prefix_cache;
  const auto& p = a.req.policy;
  // A compressing policy scores with its observation window: those queries must be computed. One
  // whose statistics need every prompt query (H2O, the gate) computes the whole prompt; its blocks
  // are still captured for others.
  const int P = static_cast<int>(a.req.prompt.size());
  const int min_compute = a.req.prompt_logprobs         ? P  // every prompt token's logits are needed
                          : !p || p->full               ? 1
                          : p->needs_every_prompt_query ? P
                                                        : std::max(1, sequence_shape(*p, P).window);
  a.lease =
      cache.acquire(a.req.prompt, prefix::salt_of(a.req.cache_salt), a.req.kv_category, now_seconds(), min_compute);
  cache.load(engine_.kv(), a.seq, a.lease);
  a.prefilled = static_cast<size_t>(a.lease.cached_tokens());
  a.result.cached_tokens = a.lease.cached_tokens();
  if (auto capture = cache.capture_observer(a.lease)) engine_.observe(a.seq, std::move(capture), true);
}

void Scheduler::step(std::vector<std::shared_ptr<Active>>& running) {
  const int V = engine_.model().config().n_vocab;
  std::vector<BatchEntry> batch;
  std::vector<Active*> owner;
  std::vector<size_t> prefill_len;  // tokens of the prompt in this entry (0: a decode step)
  int budget = opt_.prefill_chunk;
  for (auto& a : running) {
    const size_t left = a->req.prompt.size() - a->prefilled;
    if (left > 0) {
      if (budget <= 0) continue;
      const size_t n = std::min(left, static_cast<size_t>(budget));
      budget -= static_cast<int>(n);
      batch.push_back(
          {a->seq, std::span<const int32_t>(a->req.prompt.data() + a->prefilled, n), a->req.prompt_logprobs});
      prefill_len.push_back(n);
    } else {
      batch.push_back({a->seq, std::span<const int32_t>(&a->next_token, 1), false});
      prefill_len.push_back(0);
    }
    owner.push_back(a.get());
  }
  if (batch.empty()) return;
  std::vector<float> logits;
  try {
    logits = engine_.forward(batch);
  } catch (const std::exception& e) {
    log_internal_error("forward pass", e);
    for (Active* a : owner) finish(*a, "error", e.what());
    return;
  }
  refresh_kv_bytes();
  {
    std::lock_guard<std::mutex> lk(mu_);
    ++stats_.steps;
  }
  size_t row = 0;  // logits rows: one per entry, or one per token of a prompt-scoring entry
  for (size_t i = 0; i < owner.size(); ++i) {
    Active& a = *owner[i];
    const size_t rows = batch[i].all_logits ? batch[i].tokens.size() : 1;
    const float* first_row = logits.data() + row * static_cast<size_t>(V);
    row += rows;
    // Whatever goes wrong with one request (a tokenizer that cannot decode, a callback that throws)
    // fails that request alone; the others and the server go on.
    try {
      if (batch[i].all_logits) {  // a prompt-scoring prefill chunk (decode steps never ask for all rows)
        score_prompt(a, first_row, prefill_len[i]);
        first_row += (rows - 1) * static_cast<size_t>(V);  // the last row predicts what comes next
      }
      advance(a, first_row, prefill_len[i]);
    } catch (const std::exception& e) {
      log_internal_error(fmt::format("request {}", a.id), e);
      finish(a, "error", fmt::format("internal error: {}", e.what()));
    }
  }
}

// The logprobs of the prompt tokens a prefill chunk of n tokens predicts: row j holds the logits after
// prompt token prefilled + j, i.e. the distribution of the token after it.
void Scheduler::score_prompt(Active& a, const float* rows, size_t n) {
  const int V = engine_.model().config().n_vocab;
  const std::vector<int32_t>& p = a.req.prompt;
  const int k = std::max(0, a.req.logprobs);
  if (a.prefilled == 0) a.result.prompt_logprobs.push_back({p[0], 0.0f, false, {}});
  for (size_t j = 0; j < n; ++j) {
    const size_t next = a.prefilled + j + 1;
    if (next >= p.size()) break;
    const float* z = rows + j * static_cast<size_t>(V);
    a.result.prompt_logprobs.push_back({p[next], token_log_prob(z, V, p[next]), true,
                                        k > 0 ? top_log_probs(z, V, k) : std::vector<std::pair<int32_t, float>>{}});
  }
}

// One request's part of a step: count its prefill, or sample, detokenize and stream its next token.
void Scheduler::advance(Active& a, const float* logits, size_t prefill_len) {
  const Tokenizer& tok = engine_.model().tokenizer();
  const int V = engine_.model().config().n_vocab;
  {
    if (prefill_len > 0) {
      a.prefilled += prefill_len;
      {
        std::lock_guard<std::mutex> lk(mu_);
        stats_.prompt_tokens += static_cast<long>(prefill_len);
      }
      if (a.prefilled < a.req.prompt.size()) return;
      a.result.kv_bytes_peak = engine_.kv().bytes_sequence(a.seq);
      if (a.req.max_tokens == 0) {  // scoring the prompt only
        finish(a, "length");
        return;
      }
    }
    const int32_t next = a.sampler.sample(logits, V);
    if (a.req.logprobs >= 0)  // from the logits before sampling (which the sampler does not change)
      a.result.logprobs.push_back(
          {next, token_log_prob(logits, V, next), true,
           a.req.logprobs > 0 ? top_log_probs(logits, V, a.req.logprobs) : std::vector<std::pair<int32_t, float>>{}});
    if (a.t_first == 0) a.t_first = now_seconds();
    if (tok.is_end_of_generation(next) && !a.req.ignore_eos) {
      finish(a, "stop");
      return;
    }
    a.result.tokens.push_back(next);
    a.all.push_back(next);
    a.shown = tok.decode(a.all);
    const std::string_view gen = std::string_view(a.shown).substr(std::min(a.shown.size(), a.prompt_text_size));
    size_t safe = gen.size();
    for (const std::string& s : a.req.stop) {
      const size_t at = gen.find(s);
      if (at < a.stop_at) a.stop_at = at;
      // Hold back a suffix that is the start of a stop string.
      for (size_t k = std::min(s.size() - 1, gen.size()); k > 0; --k)
        if (gen.substr(gen.size() - k) == std::string_view(s).substr(0, k)) {
          safe = std::min(safe, gen.size() - k);
          break;
        }
    }
    if (a.stop_at != std::string::npos) safe = a.stop_at;
    // A character that a later token may still complete is held back (a byte-fallback token can end
    // mid-character); what never becomes UTF-8 is replaced by U+FFFD.
    if (safe > a.emitted) safe = a.emitted + utf8_complete_prefix(gen.substr(a.emitted, safe - a.emitted));
    std::string piece;
    if (safe > a.emitted) {
      piece = utf8_sanitize(gen.substr(a.emitted, safe - a.emitted));
      a.emitted = safe;
    }
    if (a.req.on_token) a.req.on_token(next, piece);
    if (a.stop_at != std::string::npos) {
      finish(a, "stop");
      return;
    }
    if (static_cast<int>(a.result.tokens.size()) >= a.req.max_tokens ||
        engine_.kv().next_position(a.seq) >= engine_.ctx()) {
      finish(a, "length");
      return;
    }
    a.next_token = next;
  }
}

void Scheduler::run() {
  std::vector<std::shared_ptr<Active>> running;
  for (;;) {
    std::vector<std::shared_ptr<Active>> dropped;
    bool stopping = false;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return stop_ || !queue_.empty() || !running.empty(); });
      stopping = stop_;
      if (stopping) {
        dropped.assign(queue_.begin(), queue_.end());
        queue_.clear();
      } else {
        while (!queue_.empty() && static_cast<int>(running.size()) < opt_.max_batch) {
          std::shared_ptr<Active> a = queue_.front();
          if (a->cancelled) {
            queue_.pop_front();
            dropped.push_back(a);
            continue;
          }
          // Memory admission: a sequence may grow to prompt + max_tokens uncompressed tokens.
          const size_t need =
              engine_.kv().bytes_per_token_full() * (a->req.prompt.size() + static_cast<size_t>(a->req.max_tokens));
          if (opt_.max_kv_bytes > 0 && !running.empty() && stats_.kv_bytes + need > opt_.max_kv_bytes) break;
          queue_.pop_front();
          running.push_back(a);
        }
      }
      stats_.queued = static_cast<int>(queue_.size());
      running_count_ = static_cast<int>(running.size());
      stats_.running = running_count_;
    }
    for (auto& a : dropped) finish(*a, "cancelled");
    if (stopping) {
      for (auto& a : running) finish(*a, "cancelled");
      break;
    }
    for (auto& a : running) {
      if (a->seq >= 0 || a->done) continue;
      a->t_admit = now_seconds();
      try {
        a->seq = engine_.new_sequence();
        const int P = static_cast<int>(a->req.prompt.size());
        a->compressor = attach_policy(engine_, a->seq, a->req.policy, P);
        if (opt_.prefix_cache) admit_cached_prefix(*a);
      } catch (const std::exception& e) {
        log_internal_error(fmt::format("admitting request {}", a->id), e);
        finish(*a, "error", e.what());
      }
    }
    for (auto& a : running)
      if (a->cancelled) finish(*a, "cancelled");
    running.erase(std::remove_if(running.begin(), running.end(), [](const auto& a) { return a->done; }), running.end());
    if (!running.empty()) step(running);
    running.erase(std::remove_if(running.begin(), running.end(), [](const auto& a) { return a->done; }), running.end());
    {
      std::lock_guard<std::mutex> lk(mu_);
      running_count_ = static_cast<int>(running.size());
      stats_.running = running_count_;
      if (queue_.empty() && running.empty()) idle_cv_.notify_all();
    }
  }
  std::lock_guard<std::mutex> lk(mu_);
  running_count_ = 0;
  idle_cv_.notify_all();
}

}  // namespace kvwise
