#include "model/forward.h"

#include <algorithm>
#include <cmath>

#include "base/error.h"
#include "tensor/quant.h"

namespace kvwise {

std::unique_ptr<Model> Model::load(const std::string& path) {
  auto m = std::unique_ptr<Model>(new Model());
  m->file_ = GgufFile::open(path);
  m->config_ = ModelConfig::from_gguf(*m->file_);
  m->weights_ = bind_weights(*m->file_, m->config_);
  m->tokenizer_ = Tokenizer::from_gguf(*m->file_);
  KV_CHECK(m->tokenizer_->n_vocab() == m->config_.n_vocab, "{}: tokenizer has {} tokens, the embedding {} rows", path,
           m->tokenizer_->n_vocab(), m->config_.n_vocab);
  return m;
}

namespace {

void rmsnorm(const float* x, const float* w, float* out, int n, float eps) {
  double ss = 0;
  for (int i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float scale = 1.0f / std::sqrt(static_cast<float>(ss / n) + eps);
  for (int i = 0; i < n; ++i) out[i] = x[i] * scale * w[i];
}

void add_bias(float* y, const float* b, int64_t m, int64_t n) {
  if (!b) return;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) y[i * n + j] += b[j];
}

// RMSNorm of every head of M rows in place (qwen3/gemma3's Q and K norms).
void head_norms(float* x, int64_t M, int heads, int hd, const float* w, float eps) {
  if (!w) return;
  for (int64_t i = 0; i < M * heads; ++i) rmsnorm(x + i * hd, w, x + i * hd, hd, eps);
}

// RMSNorm of M rows in place (gemma's post-attention and post-FFN norms).
void rows_norm(float* x, int64_t M, int64_t dim, const float* w, float eps) {
  if (!w) return;
  for (int64_t r = 0; r < M; ++r) rmsnorm(x + r * dim, w, x + r * dim, static_cast<int>(dim), eps);
}

// The gate of a gated FFN times the up projection: SwiGLU or GeGLU (GELU's tanh form, as ggml's gelu).
void gated(float* g, const float* u, size_t n, Activation act) {
  if (act == Activation::Silu) {
    for (size_t i = 0; i < n; ++i) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
    return;
  }
  constexpr float kSqrt2OverPi = 0.7978845608028654f, kCoef = 0.044715f;
  for (size_t i = 0; i < n; ++i) {
    const float x = g[i];
    g[i] = 0.5f * x * (1.0f + std::tanh(kSqrt2OverPi * x * (1.0f + kCoef * x * x))) * u[i];
  }
}

}  // namespace

Engine::Engine(const Model& model, const EngineOptions& options)
    : model_(model),
      options_(options),
      ctx_(options.ctx > 0 ? options.ctx : model.config().ctx_len),
      pool_(options.threads, options.cap_threads_to_cores),
      kv_(KvLayout{model.config().n_layers, model.config().n_heads, model.config().n_kv_heads, model.config().head_dim,
                   options.kv_type, options.page_tokens}) {
  KV_CHECK(options.prefill_chunk > 0, "prefill chunk must be positive");
  set_blas_threads(1);
  rope_ = rope_tables(model.config(), model.weights(), ctx_);
}

int Engine::layer_slot_bound(int layer) const {
  const int w = model_.config().layers[static_cast<size_t>(layer)].window;
  return w > 0 ? w + 2 * options_.page_tokens : 0;
}

void Engine::observe(SeqId seq, std::shared_ptr<SequenceObserver> observer, bool first) {
  KV_CHECK(kv_.has_sequence(seq), "no sequence {}", seq);
  if (!observer) {
    observers_.erase(seq);
    return;
  }
  auto& list = observers_[seq];
  list.insert(first ? list.begin() : list.end(), std::move(observer));
}

const std::vector<std::shared_ptr<SequenceObserver>>* Engine::observers(SeqId seq) const {
  auto it = observers_.find(seq);
  return it == observers_.end() || it->second.empty() ? nullptr : &it->second;
}

std::vector<float> Engine::forward(std::span<const BatchEntry> batch) {
  const ModelConfig& c = model_.config();
  const ModelWeights& W = model_.weights();
  const int64_t dim = c.dim, q_dim = int64_t{c.n_heads} * c.head_dim, kv_dim = int64_t{c.n_kv_heads} * c.head_dim;

  // Token rows of the batch and their positions.
  int64_t M = 0, n_logits = 0;
  std::vector<int32_t> pos;
  std::vector<int64_t> first_row;
  for (const BatchEntry& e : batch) {
    KV_CHECK(!e.tokens.empty(), "empty batch entry for sequence {}", e.seq);
    KV_CHECK(e.speculative >= 0 && e.speculative <= static_cast<int>(e.tokens.size()),
             "{} speculative tokens in an entry of {}", e.speculative, e.tokens.size());
    const int32_t p0 = kv_.next_position(e.seq);
    KV_CHECK(static_cast<int64_t>(p0) + static_cast<int64_t>(e.tokens.size()) <= ctx_,
             "sequence {} would reach {} tokens, more than the context of {}", e.seq,
             static_cast<int64_t>(p0) + static_cast<int64_t>(e.tokens.size()), ctx_);
    first_row.push_back(M);
    for (size_t i = 0; i < e.tokens.size(); ++i) {
      KV_CHECK(e.tokens[i] >= 0 && e.tokens[i] < c.n_vocab, "token id {} is outside the vocabulary of {}", e.tokens[i],
               c.n_vocab);
      pos.push_back(p0 + static_cast<int32_t>(i));
    }
    M += static_cast<int64_t>(e.tokens.size());
    n_logits += e.all_logits ? static_cast<int64_t>(e.tokens.size()) : 1;
  }

  std::vector<float> x(static_cast<size_t>(M * dim)), xn(x.size()), tmp(x.size());
  std::vector<float> q(static_cast<size_t>(M * q_dim)), att(q.size());
  std::vector<float> k(static_cast<size_t>(M * kv_dim)), v(k.size());
  std::vector<float> g(static_cast<size_t>(M * c.ffn_dim)), u(g.size());
  {
    int64_t r = 0;
    for (const BatchEntry& e : batch)
      for (int32_t t : e.tokens) {
        dequantize_row(W.tok_embd.type, W.tok_embd.data + static_cast<size_t>(t) * W.tok_embd.row_bytes,
                       x.data() + r * dim, dim);
        if (c.embed_scale != 1.0f)
          for (int64_t i = 0; i < dim; ++i) x[static_cast<size_t>(r * dim + i)] *= c.embed_scale;
        ++r;
      }
  }

  // Each entry's observers (a copy: an observer may not attach others mid-step).
  std::vector<std::vector<std::shared_ptr<SequenceObserver>>> watch(batch.size());
  for (size_t b = 0; b < batch.size(); ++b)
    if (const auto* list = observers(batch[b].seq)) watch[b] = *list;
  for (size_t b = 0; b < batch.size(); ++b)
    for (const auto& o : watch[b]) o->on_tokens(batch[b].seq, batch[b].tokens, pos[static_cast<size_t>(first_row[b])]);
  const auto show_hidden = [&](int layer) {
    for (size_t b = 0; b < batch.size(); ++b)
      for (const auto& o : watch[b])
        o->on_hidden(batch[b].seq, layer, &x[first_row[b] * dim], dim, static_cast<int>(batch[b].tokens.size()));
  };

  for (int l = 0; l < c.n_layers; ++l) {
    show_hidden(l);
    const LayerWeights& L = W.layers[static_cast<size_t>(l)];
    const LayerAttention& LA = c.layers[static_cast<size_t>(l)];
    const LayerRope& rope = rope_[static_cast<size_t>(l)];
    for (int64_t r = 0; r < M; ++r) rmsnorm(&x[r * dim], L.attn_norm, &xn[r * dim], c.dim, c.rms_eps);
    matmul_many(pool_, {{&L.wq, q.data()}, {&L.wk, k.data()}, {&L.wv, v.data()}}, xn.data(), M);
    add_bias(q.data(), L.bq, M, q_dim);
    add_bias(k.data(), L.bk, M, kv_dim);
    add_bias(v.data(), L.bv, M, kv_dim);
    head_norms(q.data(), M, c.n_heads, c.head_dim, L.q_norm, c.rms_eps);
    head_norms(k.data(), M, c.n_kv_heads, c.head_dim, L.k_norm, c.rms_eps);
    pool_.parallel_for(static_cast<size_t>(M), [&](size_t r0, size_t r1, int) {
      for (size_t r = r0; r < r1; ++r) {
        const float p = static_cast<float>(pos[r]);
        apply_rope(&q[r * q_dim], c.n_heads, c.head_dim, c.n_rot, c.rope_type, rope.inv_freq.data(), p);
        apply_rope(&k[r * kv_dim], c.n_kv_heads, c.head_dim, c.n_rot, c.rope_type, rope.inv_freq.data(), p);
        if (rope.mscale != 1.0f) {  // YaRN / LongRoPE: the rotated dimensions are scaled
          for (int h = 0; h < c.n_heads; ++h)
            for (int i = 0; i < c.n_rot; ++i) q[r * q_dim + h * c.head_dim + i] *= rope.mscale;
          for (int h = 0; h < c.n_kv_heads; ++h)
            for (int i = 0; i < c.n_rot; ++i) k[r * kv_dim + h * c.head_dim + i] *= rope.mscale;
        }
      }
    });
    for (size_t b = 0; b < batch.size(); ++b) {
      const BatchEntry& e = batch[b];
      const int64_t r0 = first_row[b];
      const int T = static_cast<int>(e.tokens.size());
      for (const auto& o : watch[b]) o->before_attention(kv_, e.seq, l);
      for (int t = 0; t < T; ++t)
        for (int h = 0; h < c.n_kv_heads; ++h)
          kv_.append(e.seq, l, h, &k[(r0 + t) * kv_dim + h * c.head_dim], &v[(r0 + t) * kv_dim + h * c.head_dim],
                     pos[static_cast<size_t>(r0 + t)]);
      AttentionQuery aq{
          &q[r0 * q_dim], q_dim,    &pos[static_cast<size_t>(r0)], T, &att[r0 * q_dim], q_dim, c.query_scale(),
          c.attn_softcap, LA.window};
      attend(pool_, kv_, e.seq, l, aq, options_.attention_path);
      if (e.speculative > 0)
        for (int h = 0; h < c.n_kv_heads; ++h) kv_.pop_back(e.seq, l, h, e.speculative);
      for (const auto& o : watch[b])
        o->after_attention(kv_, e.seq, {l, aq.q, aq.out, q_dim, aq.pos, T, e.speculative, &pool_});
      if (LA.window > 0) {
        // A sliding-window layer keeps only what a later query can see: the next query, at the
        // position after this entry, sees keys above next - window.
        const int32_t next = pos[static_cast<size_t>(r0 + T - 1)] + 1 - e.speculative;
        for (int h = 0; h < c.n_kv_heads; ++h) kv_.drop_before(e.seq, l, h, next - LA.window + 1);
      }
    }
    matmul(pool_, L.wo, att.data(), M, tmp.data());
    rows_norm(tmp.data(), M, dim, L.post_attn_norm, c.rms_eps);
    for (size_t i = 0; i < x.size(); ++i) x[i] += tmp[i];

    for (int64_t r = 0; r < M; ++r) rmsnorm(&x[r * dim], L.ffn_norm, &xn[r * dim], c.dim, c.rms_eps);
    matmul_many(pool_, {{&L.w_gate, g.data()}, {&L.w_up, u.data()}}, xn.data(), M);
    gated(g.data(), u.data(), g.size(), c.ffn_act);
    matmul(pool_, L.w_down, g.data(), M, tmp.data());
    rows_norm(tmp.data(), M, dim, L.post_ffn_norm, c.rms_eps);
    for (size_t i = 0; i < x.size(); ++i) x[i] += tmp[i];
  }

  show_hidden(c.n_layers);
  for (const BatchEntry& e : batch)
    kv_.set_next_position(e.seq, kv_.next_position(e.seq) + static_cast<int32_t>(e.tokens.size()) - e.speculative);
  for (size_t b = 0; b < batch.size(); ++b)
    for (const auto& o : watch[b]) o->after_forward(kv_, batch[b].seq);

  // Final norm and output projection for the rows that want logits.
  std::vector<float> rows(static_cast<size_t>(n_logits * dim));
  int64_t n = 0;
  for (size_t b = 0; b < batch.size(); ++b) {
    const int64_t T = static_cast<int64_t>(batch[b].tokens.size());
    const int64_t from = batch[b].all_logits ? first_row[b] : first_row[b] + T - 1;
    for (int64_t r = from; r < first_row[b] + T; ++r, ++n)
      rmsnorm(&x[r * dim], W.output_norm, &rows[n * dim], c.dim, c.rms_eps);
  }
  std::vector<float> logits(static_cast<size_t>(n_logits * c.n_vocab));
  matmul(pool_, W.output, rows.data(), n_logits, logits.data());
  soft_cap(logits.data(), logits.size(), c.final_softcap);
  // Unstored scoring passes the observers ask for (their own logits are not needed).
  for (size_t b = 0; b < batch.size(); ++b)
    for (const auto& o : watch[b])
      for (std::vector<int32_t> t = o->scoring_pass(kv_, batch[b].seq); !t.empty();
           t = o->scoring_pass(kv_, batch[b].seq)) {
        const BatchEntry pass{batch[b].seq, t, false, static_cast<int>(t.size())};
        forward(std::span<const BatchEntry>(&pass, 1));
      }
  return logits;
}

std::vector<float> Engine::prefill(SeqId seq, std::span<const int32_t> tokens, bool all_logits) {
  KV_CHECK(!tokens.empty(), "empty prompt");
  std::vector<float> out;
  const size_t chunk = static_cast<size_t>(options_.prefill_chunk);
  for (size_t i = 0; i < tokens.size(); i += chunk) {
    const size_t n = std::min(chunk, tokens.size() - i);
    const bool last = i + n == tokens.size();
    BatchEntry e{seq, tokens.subspan(i, n), all_logits};
    std::vector<float> lg = forward(std::span<const BatchEntry>(&e, 1));
    if (all_logits || last) out.insert(out.end(), lg.begin(), lg.end());
  }
  return out;
}

std::vector<float> Engine::decode(SeqId seq, int32_t token) {
  // A speculative observer (SpeCache) makes the step carry a guess; every observer hears how it went.
  const auto* list = observers(seq);
  const bool speculative =
      list && std::any_of(list->begin(), list->end(), [](const auto& o) { return o->speculative(); });
  // The guess needs a position of its own: at the end of the context the step runs alone.
  if (!speculative || kv_.next_position(seq) + 2 > ctx_) {
    BatchEntry e{seq, std::span<const int32_t>(&token, 1), false};
    return forward(std::span<const BatchEntry>(&e, 1));
  }
  const int64_t V = model_.config().n_vocab;
  const auto argmax = [](const float* row, int64_t n) {
    return static_cast<int32_t>(std::max_element(row, row + n) - row);
  };
  auto it = guesses_.find(seq);
  if (it == guesses_.end()) {
    // Pre-decoding: the token alone, never stored, makes the first guess.
    BatchEntry e{seq, std::span<const int32_t>(&token, 1), false, 1};
    const std::vector<float> lg = forward(std::span<const BatchEntry>(&e, 1));
    it = guesses_.emplace(seq, Guess{argmax(lg.data(), V), -1}).first;
  }
  Guess& g = it->second;
  if (g.used >= 0)
    for (const auto& o : *list) o->on_guess(g.used == token);
  const int32_t pair[2] = {token, g.next};
  BatchEntry e{seq, std::span<const int32_t>(pair, 2), true, 1};
  std::vector<float> lg = forward(std::span<const BatchEntry>(&e, 1));
  g.used = g.next;
  g.next = argmax(lg.data() + V, V);
  lg.resize(static_cast<size_t>(V));
  return lg;
}

}  // namespace kvwise
