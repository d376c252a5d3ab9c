#include "eval/attention_error.h"

#include <cmath>
#include <random>

#include "base/error.h"
#include "kv/attention.h"

namespace kvwise {

AttentionSample synthetic_attention(int prompt, int future, int n_heads, int n_kv_heads, int head_dim, int needles,
                                    uint64_t seed) {
  KV_CHECK(prompt > 0 && future > 0 && n_heads > 0 && n_kv_heads > 0 && n_heads % n_kv_heads == 0 && head_dim > 0,
           "synthetic attention: bad shape");
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> N(0.0f, 1.0f);
  AttentionSample s{n_heads, n_kv_heads, head_dim, prompt, future, {}, {}, {}};
  const int G = n_heads / n_kv_heads;
  s.k.resize(static_cast<size_t>(prompt) * static_cast<size_t>(n_kv_heads * head_dim));
  s.v.resize(s.k.size());
  for (float& x : s.k) x = N(rng);
  for (float& x : s.v) x = N(rng);
  // Needles live in the prefix, away from the window; each query head uses a few of its KV head's.
  std::uniform_int_distribution<int> where(1, std::max(1, prompt * 3 / 4));
  std::vector<std::vector<int>> head_needles(static_cast<size_t>(n_heads));
  for (int h = 0; h < n_heads; ++h)
    for (int i = 0; i < std::max(1, needles); ++i) head_needles[static_cast<size_t>(h)].push_back(where(rng));
  const int rows = prompt + future;
  s.q.resize(static_cast<size_t>(rows) * static_cast<size_t>(n_heads * head_dim));
  for (int r = 0; r < rows; ++r)
    for (int h = 0; h < n_heads; ++h) {
      // Concentration grows with the head index: head 0 diffuse, the last head sharply focused.
      // (A needle's logit is about focus * head_dim / sqrt(head_dim): 2.4 to 12 at d = 64.)
      const float focus = 0.3f + 1.2f * static_cast<float>(h) / static_cast<float>(std::max(1, n_heads - 1));
      const auto& nd = head_needles[static_cast<size_t>(h)];
      const int needle = nd[static_cast<size_t>(rng() % nd.size())];
      float* q = s.q.data() + (static_cast<size_t>(r) * static_cast<size_t>(n_heads) + static_cast<size_t>(h)) *
                                  static_cast<size_t>(head_dim);
      const float* kn =
          s.k.data() + (static_cast<size_t>(needle) * static_cast<size_t>(n_kv_heads) + static_cast<size_t>(h / G)) *
                           static_cast<size_t>(head_dim);
      for (int c = 0; c < head_dim; ++c) q[c] = 0.5f * N(rng) + focus * kn[c];
    }
  return s;
}

namespace {
class QueryRecorder : public SequenceObserver {
 public:
  QueryRecorder(int layer, std::vector<float>& q) : layer_(layer), q_(q) {}
  void after_attention(KvStore&, SeqId, const Attention& a) override {
    if (a.layer != layer_) return;
    for (int t = 0; t < a.T; ++t) q_.insert(q_.end(), a.q + t * a.stride, a.q + (t + 1) * a.stride);
  }

 private:
  int layer_;
  std::vector<float>& q_;
};
}  // namespace

AttentionSample recorded_attention(Engine& engine, const std::vector<int32_t>& tokens, int prompt, int layer) {
  const ModelConfig& c = engine.model().config();
  KV_CHECK(layer >= 0 && layer < c.n_layers, "layer {} is outside the model's {} layers", layer, c.n_layers);
  KV_CHECK(prompt > 0 && prompt < static_cast<int>(tokens.size()), "recorded attention: need future tokens");
  AttentionSample s{c.n_heads, c.n_kv_heads, c.head_dim, prompt, static_cast<int>(tokens.size()) - prompt, {}, {}, {}};
  const SeqId seq = engine.new_sequence();
  try {
    engine.observe(seq, std::make_shared<QueryRecorder>(layer, s.q));
    engine.prefill(seq, tokens);
    const size_t row = static_cast<size_t>(c.n_kv_heads * c.head_dim);
    s.k.resize(static_cast<size_t>(prompt) * row);
    s.v.resize(s.k.size());
    for (int i = 0; i < prompt; ++i)
      for (int h = 0; h < c.n_kv_heads; ++h) {
        const size_t off = static_cast<size_t>(i) * row + static_cast<size_t>(h * c.head_dim);
        engine.kv().read_slot(seq, layer, h, i, s.k.data() + off, s.v.data() + off);
      }
  } catch (...) {
    engine.free_sequence(seq);
    throw;
  }
  engine.free_sequence(seq);
  return s;
}

AttentionErrorCell attention_error(ThreadPool& pool, const AttentionSample& s, std::shared_ptr<const KvPolicy> policy) {
  KV_CHECK(!policy->rerotate, "eval attention does not model re-rotated positions");
  const int H = s.n_heads, HK = s.n_kv_heads, hd = s.head_dim, n = s.prompt, m = s.future, G = H / HK;
  KvStore kv(KvLayout{1, H, HK, hd, DType::F32, 32});
  const SeqId full = kv.create_sequence(), comp_seq = kv.create_sequence();
  for (const SeqId seq : {full, comp_seq})
    for (int i = 0; i < n; ++i)
      for (int h = 0; h < HK; ++h) {
        const size_t off =
            (static_cast<size_t>(i) * static_cast<size_t>(HK) + static_cast<size_t>(h)) * static_cast<size_t>(hd);
        kv.append(seq, 0, h, s.k.data() + off, s.v.data() + off, i);
      }
  const int64_t qs = int64_t{H} * hd;
  std::vector<int32_t> pos(static_cast<size_t>(n + m));
  for (int i = 0; i < n + m; ++i) pos[static_cast<size_t>(i)] = i;
  std::vector<float> out(static_cast<size_t>(n + m) * static_cast<size_t>(qs));
  if (!policy->full) {
    KvCompressor comp(policy, kv.layout(), 0, n, RopeInfo{});
    kv.set_taps(comp_seq, comp.prefill_taps());
    AttentionQuery aq{s.q.data(), qs, pos.data(), n, out.data(), qs};
    attend(pool, kv, comp_seq, 0, aq);
    comp.after_attention(kv, comp_seq, {0, aq.q, aq.out, qs, aq.pos, n});
    kv.set_taps(comp_seq, TapConfig{});
  }
  std::vector<float> of(static_cast<size_t>(m) * static_cast<size_t>(qs)), oc(of.size());
  const float* fq = s.q.data() + static_cast<size_t>(n) * static_cast<size_t>(qs);
  attend(pool, kv, full, 0, {fq, qs, pos.data() + n, m, of.data(), qs});
  attend(pool, kv, comp_seq, 0, {fq, qs, pos.data() + n, m, oc.data(), qs});
  AttentionErrorCell c;
  double num = 0, den = 0;
  for (size_t i = 0; i < of.size(); ++i) {
    num += static_cast<double>(oc[i] - of[i]) * (oc[i] - of[i]);
    den += static_cast<double>(of[i]) * of[i];
  }
  c.relative_error = den > 0 ? std::sqrt(num / den) : 0.0;
  // Retained mass under the full softmax.
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  std::vector<double> p(static_cast<size_t>(n));
  double mass = 0;
  long kept = 0;
  for (int h = 0; h < HK; ++h) {
    std::vector<char> keep(static_cast<size_t>(n), 0);
    const int len = kv.head_len(comp_seq, 0, h);
    kept += len;
    for (int i = 0; i < len; ++i) keep[static_cast<size_t>(kv.slot_position(comp_seq, 0, h, i))] = 1;
    for (int g = 0; g < G; ++g)
      for (int t = 0; t < m; ++t) {
        const float* q = fq + static_cast<size_t>(t) * static_cast<size_t>(qs) + static_cast<size_t>((h * G + g) * hd);
        double mx = -1e300, sum = 0, in = 0;
        for (int j = 0; j < n; ++j) {
          const float* k = s.k.data() + (static_cast<size_t>(j) * static_cast<size_t>(HK) + static_cast<size_t>(h)) *
                                            static_cast<size_t>(hd);
          double d = 0;
          for (int x = 0; x < hd; ++x) d += static_cast<double>(q[x]) * k[x];
          p[static_cast<size_t>(j)] = d * scale;
          mx = std::max(mx, p[static_cast<size_t>(j)]);
        }
        for (int j = 0; j < n; ++j) {
          const double e = std::exp(p[static_cast<size_t>(j)] - mx);
          sum += e;
          if (keep[static_cast<size_t>(j)]) in += e;
        }
        mass += in / sum;
      }
  }
  c.retained_mass = mass / (static_cast<double>(H) * m);
  c.kept_fraction = static_cast<double>(kept) / (static_cast<double>(HK) * n);
  return c;
}

}  // namespace kvwise
