// The selection rule of each method registered in compress/methods/, on constructed keys, values and
// queries whose answer is known: Knorm keeps the smallest key norms, KeyDiff the keys least like the
// mean key, TOVA the last query's favourites in every head at once, ChunkKV whole chunks, CriticalKV
// re-ranks by the value projected through W_o, Expected Attention ranks as a query at the prompt's end
// would, and decoding(X) compresses back to the budget every N steps with pages freed. Also the
// registry's contract: schemas, generated help and the docs' table.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <numeric>
#include <random>
#include <set>
#include <sstream>

#include "base/error.h"
#include "compress/duo_profile.h"
#include "compress/registry.h"
#include "kv/attention.h"
#include "kv/rope.h"
#include "test_support.h"

namespace kvwise {
namespace {

// One layer of a real paged store, filled with the given keys, values and (post-RoPE) queries and
// compressed by a policy exactly as the engine's forward pass drives it.
struct Constructed {
  explicit Constructed(int n_heads = 1, int n_kv = 1, int dim = 8) : layout{1, n_heads, n_kv, dim, DType::F32, 4} {}
  KvLayout layout;
  KvStore kv{layout};
  ThreadPool pool{1};
  SeqId seq = kv.create_sequence();
  std::shared_ptr<KvCompressor> comp;
  RopeInfo rope;
  int n = 0;

  int d() const { return layout.head_dim; }
  // keys/values: [kv head][token][dim]; queries: [token][q head][dim] (empty: zero queries).
  void prefill(const std::string& spec, const std::string& budget, const std::vector<std::vector<float>>& keys,
               const std::vector<std::vector<float>>& values, std::vector<float> queries = {},
               KvCompressor::OutputProjectionSource wo = nullptr) {
    n = static_cast<int>(keys[0].size()) / d();
    comp = std::make_shared<KvCompressor>(make_policy(spec, Budget::parse(budget)), layout, 0, n, rope);
    if (wo) comp->set_output_projection(std::move(wo));
    kv.set_taps(seq, comp->prefill_taps());
    for (int i = 0; i < n; ++i)
      for (int h = 0; h < layout.n_kv_heads; ++h)
        kv.append(seq, 0, h, &keys[static_cast<size_t>(h)][static_cast<size_t>(i * d())],
                  &values[static_cast<size_t>(h)][static_cast<size_t>(i * d())], i);
    if (queries.empty()) queries.assign(static_cast<size_t>(n * layout.n_heads * d()), 0.0f);
    std::vector<int32_t> pos(static_cast<size_t>(n));
    std::iota(pos.begin(), pos.end(), 0);
    attend_and_observe(queries, pos);
    kv.set_next_position(seq, n);
    comp->after_forward(kv, seq);
  }
  void attend_and_observe(const std::vector<float>& q, const std::vector<int32_t>& pos) {
    const int64_t qs = int64_t{layout.n_heads} * d();
    std::vector<float> out(q.size());
    attend(pool, kv, seq, 0, {q.data(), qs, pos.data(), static_cast<int>(pos.size()), out.data(), qs});
    comp->after_attention(kv, seq, {0, q.data(), out.data(), qs, pos.data(), static_cast<int>(pos.size())});
  }
  // One decode step with the given key (every KV head) and a zero value and query.
  void decode(const std::vector<float>& key) {
    const int32_t p = kv.next_position(seq);
    const std::vector<float> v(static_cast<size_t>(d()), 0.0f);
    for (int h = 0; h < layout.n_kv_heads; ++h) kv.append(seq, 0, h, key.data(), v.data(), p);
    attend_and_observe(std::vector<float>(static_cast<size_t>(layout.n_heads * d()), 0.0f), {p});
    kv.set_next_position(seq, p + 1);
    comp->after_forward(kv, seq);
  }
  std::set<int32_t> kept(int head = 0) const {
    std::set<int32_t> s;
    for (int i = 0; i < kv.head_len(seq, 0, head); ++i) s.insert(kv.slot_position(seq, 0, head, i));
    return s;
  }
};

// Row-major n x d with row i = scale[i] * e_axis[i].
std::vector<float> axis_rows(const std::vector<float>& scale, const std::vector<int>& axis, int d) {
  std::vector<float> x(scale.size() * static_cast<size_t>(d), 0.0f);
  for (size_t i = 0; i < scale.size(); ++i) x[i * static_cast<size_t>(d) + static_cast<size_t>(axis[i])] = scale[i];
  return x;
}

std::vector<float> ones_rows(int n, int d) {
  return axis_rows(std::vector<float>(static_cast<size_t>(n), 1.0f), std::vector<int>(static_cast<size_t>(n), 0), d);
}

TEST(Knorm, KeepsTheSmallestKeyNorms) {
  Constructed c;
  std::vector<float> norm(16);
  std::iota(norm.begin(), norm.end(), 1.0f);
  std::shuffle(norm.begin(), norm.end(), std::mt19937(7));
  c.prefill("knorm", "6", {axis_rows(norm, std::vector<int>(16, 2), c.d())}, {ones_rows(16, c.d())});
  std::set<int32_t> want;
  for (int i = 0; i < 16; ++i)
    if (norm[static_cast<size_t>(i)] <= 6) want.insert(i);
  EXPECT_EQ(c.kept(), want);
}

TEST(KeyDiff, KeepsTheKeysLeastLikeTheMeanKey) {
  Constructed c;
  std::vector<float> scale(16, 1.0f);
  std::vector<int> axis(16, 0);
  for (int i : {3, 9, 14}) axis[static_cast<size_t>(i)] = 1;  // the odd ones out
  for (int i = 0; i < 16; ++i) scale[static_cast<size_t>(i)] = 1.0f + 0.1f * static_cast<float>(i % 5);
  c.prefill("keydiff", "3", {axis_rows(scale, axis, c.d())}, {ones_rows(16, c.d())});
  EXPECT_EQ(c.kept(), (std::set<int32_t>{3, 9, 14}));
}

TEST(Tova, EveryHeadKeepsTheLastQuerysFavouritesOfTheWholeLayer) {
  Constructed c(2, 2);
  const int d = c.d(), n = 16;
  std::vector<float> s0(n, 0.1f), s1(n, 0.1f);
  std::vector<int> a0(n, 0), a1(n, 0);
  for (int i : {2, 7}) s0[static_cast<size_t>(i)] = 5, a0[static_cast<size_t>(i)] = 1;  // head 0's favourites
  s1[4] = 5, a1[4] = 1;                                                                 // head 1's
  std::vector<float> q(static_cast<size_t>(n * 2 * d), 0.0f);
  for (int h = 0; h < 2; ++h) q[static_cast<size_t>(((n - 1) * 2 + h) * d + 1)] = 3.0f;  // only the last query looks
  c.prefill("tova", "4", {axis_rows(s0, a0, d), axis_rows(s1, a1, d)}, {ones_rows(n, d), ones_rows(n, d)}, q);
  const std::set<int32_t> want{2, 4, 7, 15};  // the layer's three favourites + the last token (window=1)
  EXPECT_EQ(c.kept(0), want);
  EXPECT_EQ(c.kept(1), want);
  // While decoding TOVA evicts one token per step: the cache stays at its budget.
  c.decode(std::vector<float>(static_cast<size_t>(d), 0.0f));
  EXPECT_EQ(c.kv.head_len(c.seq, 0, 0), 4);
  EXPECT_EQ(c.kv.head_len(c.seq, 0, 1), 4);
}

TEST(ChunkKV, KeepsWholeChunksByTheirMeanScore) {
  Constructed c;
  // Chunks of 4: norms 5 5 5 5 | 1 9 9 9 | 2 2 2 2 | 3 3 3 3. Knorm alone keeps slot 4 (the smallest
  // norm); by chunk means (-5, -7, -2, -3) the last two chunks win.
  const std::vector<float> norm{5, 5, 5, 5, 1, 9, 9, 9, 2, 2, 2, 2, 3, 3, 3, 3};
  const auto keys = axis_rows(norm, std::vector<int>(16, 0), c.d());
  c.prefill("chunkkv(knorm,chunk=4)", "8", {keys}, {ones_rows(16, c.d())});
  EXPECT_EQ(c.kept(), (std::set<int32_t>{8, 9, 10, 11, 12, 13, 14, 15}));
  Constructed plain;
  plain.prefill("knorm", "8", {keys}, {ones_rows(16, c.d())});
  EXPECT_TRUE(plain.kept().count(4));
}

// The last query attends most to slot 2, then 5, then 9; values and W_o decide between 5 and 9.
struct CriticalCase {
  Constructed c;
  std::vector<float> keys, q;
  CriticalCase() {
    std::vector<float> s(16, 0.1f);
    std::vector<int> a(16, 0);
    s[2] = 4, a[2] = 1;
    s[5] = 2.2f, a[5] = 1;
    s[9] = 2.0f, a[9] = 1;
    keys = axis_rows(s, a, c.d());
    q.assign(static_cast<size_t>(16 * c.d()), 0.0f);
    q[static_cast<size_t>(15 * c.d() + 1)] = 3.0f;
  }
};

TEST(CriticalKV, StageTwoRanksByTheValueProjectedThroughWo) {
  const std::string inner = "snapkv(window=1,kernel=1,pool=none)";
  {  // the inner policy alone: the top attention
    CriticalCase k;
    k.c.prefill(inner, "3", {k.keys}, {ones_rows(16, k.c.d())}, k.q);
    EXPECT_EQ(k.c.kept(), (std::set<int32_t>{2, 5, 15}));
  }
  // Values of equal norm, but W_o amplifies channel 3, which only slot 9's value uses.
  std::vector<float> vs(16, 1.0f);
  std::vector<int> va(16, 0);
  va[9] = 3;
  const auto values = axis_rows(vs, va, 8);
  const auto wo = [](int, int64_t& rows, int64_t& cols) {
    rows = 4, cols = 8;  // model dim 4, one head of 8 channels
    std::vector<float> w(32, 0.0f);
    for (int r = 0; r < 4; ++r)
      w[static_cast<size_t>(r * 8 + r % 3)] = 1.0f, w[static_cast<size_t>(r * 8 + 3)] = 100.0f;
    return w;
  };
  {  // stage 1 keeps half the budget (slot 2); ||W_o v|| then prefers slot 9
    CriticalCase k;
    k.c.prefill("criticalkv(" + inner + ")", "3", {k.keys}, {values}, k.q, wo);
    EXPECT_EQ(k.c.kept(), (std::set<int32_t>{2, 9, 15}));
  }
  {  // ||v||_2 cannot tell them apart: the attention decides again
    CriticalCase k;
    k.c.prefill("criticalkv(" + inner + ",norm=v)", "3", {k.keys}, {values}, k.q);
    EXPECT_EQ(k.c.kept(), (std::set<int32_t>{2, 5, 15}));
  }
  {  // first_stage=1: the inner policy's choice, whatever the values
    CriticalCase k;
    k.c.prefill("criticalkv(" + inner + ",first_stage=1)", "3", {k.keys}, {values}, k.q, wo);
    EXPECT_EQ(k.c.kept(), (std::set<int32_t>{2, 5, 15}));
  }
}

// With one future position and no covariance or value weighting, Expected Attention ranks keys exactly
// as the attention logit of the prompt's mean query placed at the first position after the prompt.
TEST(ExpectedAttention, RanksAsTheMeanQueryAtThePromptsEnd) {
  for (RopeType type : {RopeType::Normal, RopeType::Neox}) {
    Constructed c;
    const int d = c.d(), n = 24;
    c.rope.head_dim = d;
    c.rope.n_rot = d;
    c.rope.type = type;
    for (int i = 0; i < d / 2; ++i) c.rope.inv_freq.push_back(std::pow(100.0f, -2.0f * static_cast<float>(i) / d));
    std::mt19937 rng(3);
    std::normal_distribution<float> N(0, 1);
    std::vector<float> keys(static_cast<size_t>(n * d)), mu(static_cast<size_t>(d)), q(static_cast<size_t>(n * d));
    for (float& x : keys) x = N(rng);
    for (float& x : mu) x = N(rng);
    // Every prompt query is mu before RoPE (post-RoPE rows as the engine hands them over).
    for (int t = 0; t < n; ++t) {
      std::copy(mu.begin(), mu.end(), q.begin() + t * d);
      apply_rope(&q[static_cast<size_t>(t * d)], 1, d, d, type, c.rope.inv_freq.data(), static_cast<float>(t));
    }
    c.prefill("expected-attention(n_future=1,cov=0,vnorm=0,sinks=0)", "6", {keys}, {ones_rows(n, d)}, q);
    std::vector<float> at_end = mu;
    apply_rope(at_end.data(), 1, d, d, type, c.rope.inv_freq.data(), static_cast<float>(n));
    std::vector<std::pair<float, int>> logit;
    for (int j = 0; j < n; ++j) {
      float s = 0;
      for (int i = 0; i < d; ++i) s += at_end[static_cast<size_t>(i)] * keys[static_cast<size_t>(j * d + i)];
      logit.push_back({s, j});
    }
    std::sort(logit.rbegin(), logit.rend());
    std::set<int32_t> want;
    for (int i = 0; i < 6; ++i) want.insert(logit[static_cast<size_t>(i)].second);
    EXPECT_EQ(c.kept(), want) << (type == RopeType::Normal ? "normal" : "neox");
  }
}

TEST(ExpectedAttention, TheCovarianceTermFavoursKeysAlongTheQueriesSpread) {
  // Queries spread along channel 1 with zero mean: the linear term is flat, and k^T Sigma k prefers
  // the keys with a channel-1 component.
  Constructed c;
  const int d = c.d(), n = 16;
  std::vector<float> q(static_cast<size_t>(n * d), 0.0f);
  for (int t = 0; t < n; ++t) q[static_cast<size_t>(t * d + 1)] = t % 2 ? 2.0f : -2.0f;
  std::vector<float> s(16, 1.0f);
  std::vector<int> a(16, 0);
  for (int i : {5, 11}) a[static_cast<size_t>(i)] = 1;
  c.prefill("expected-attention(vnorm=0,sinks=0)", "2", {axis_rows(s, a, d)}, {ones_rows(n, d)}, q);
  EXPECT_EQ(c.kept(), (std::set<int32_t>{5, 11}));
}

TEST(DecodingWrapper, CompressesBackToTheBudgetEveryNStepsAndFreesPages) {
  Constructed c;
  std::vector<float> norm(16);
  std::iota(norm.begin(), norm.end(), 10.0f);  // slot i has norm 10 + i
  c.prefill("decoding(knorm,every=2)", "8", {axis_rows(norm, std::vector<int>(16, 0), c.d())}, {ones_rows(16, c.d())});
  EXPECT_EQ(c.kv.head_len(c.seq, 0, 0), 16);  // prefill=0: the prompt stays whole
  const size_t before = c.kv.bytes_head(c.seq, 0, 0);
  std::vector<float> small(static_cast<size_t>(c.d()), 0.0f);
  small[0] = 0.5f;  // the generated tokens have the smallest norms
  c.decode(small);
  EXPECT_EQ(c.kv.head_len(c.seq, 0, 0), 17);  // not due yet
  c.decode(small);
  EXPECT_EQ(c.kv.head_len(c.seq, 0, 0), 8);
  EXPECT_EQ(c.kept(), (std::set<int32_t>{0, 1, 2, 3, 4, 5, 16, 17}));
  EXPECT_LT(c.kv.bytes_head(c.seq, 0, 0), before);
  EXPECT_EQ(c.comp->report().decode_evicted, 10);
  // prefill=1 compresses the prompt as well.
  Constructed p;
  p.prefill("decoding(knorm,every=2,prefill=1)", "8", {axis_rows(norm, std::vector<int>(16, 0), p.d())},
            {ones_rows(16, p.d())});
  EXPECT_EQ(p.kv.head_len(p.seq, 0, 0), 8);
}

// KVzip: the compressor asks for reconstruction passes (prompt + a chunk of the context) and keeps the
// tokens that a repeating query attended to most, the maximum over every pass.
TEST(KVzip, KeepsWhatTheReconstructionPassLooksAt) {
  KvLayout layout{1, 1, 1, 8, DType::F32, 4};
  KvStore kv(layout);
  const SeqId seq = kv.create_sequence();
  const int n = 16, d = 8;
  auto comp = std::make_shared<KvCompressor>(make_policy("kvzip(chunk=8,sinks=0)", Budget::parse("3")), layout, 0, n,
                                             RopeInfo{}, 64);
  comp->set_reconstruction_prompt({99});
  kv.set_taps(seq, comp->prefill_taps());
  std::vector<float> s(16, 0.1f);
  std::vector<int> ax(16, 0);
  for (int i = 0; i < 16; ++i) ax[static_cast<size_t>(i)] = i % 3 == 0 ? 3 : 4;
  s[3] = 4, ax[3] = 1;
  s[11] = 4, ax[11] = 1;
  s[6] = 4, ax[6] = 2;
  const auto keys = axis_rows(s, ax, d);
  const auto vals = ones_rows(n, d);
  std::vector<int32_t> tokens(n), pos(n);
  std::iota(tokens.begin(), tokens.end(), 10);
  std::iota(pos.begin(), pos.end(), 0);
  comp->on_tokens(seq, tokens, 0);
  for (int i = 0; i < n; ++i)
    kv.append(seq, 0, 0, &keys[static_cast<size_t>(i * d)], &vals[static_cast<size_t>(i * d)], i);
  std::vector<float> q(static_cast<size_t>(n * d), 0.0f), out(q.size());
  comp->after_attention(kv, seq, {0, q.data(), out.data(), d, pos.data(), n});
  kv.set_next_position(seq, n);
  comp->after_forward(kv, seq);
  EXPECT_EQ(kv.head_len(seq, 0, 0), n);  // nothing is compressed before the pass
  for (int chunk = 0; chunk < 2; ++chunk) {
    const std::vector<int32_t> t = comp->scoring_pass(kv, seq);
    ASSERT_EQ(t.size(), 9u);
    EXPECT_EQ(t[0], 99);
    EXPECT_EQ(t[1], 10 + 8 * chunk);  // the chunk repeats the context
    // The pass's rows: the prompt, then one repeating query that looks at axis 1 (chunk 0) or 2 (chunk 1).
    std::vector<float> pq(9 * static_cast<size_t>(d), 0.0f), po(pq.size());
    pq[static_cast<size_t>(3 * d + (chunk == 0 ? 1 : 2))] = 3.0f;
    std::vector<int32_t> pp(9);
    std::iota(pp.begin(), pp.end(), n);
    comp->after_attention(kv, seq, {0, pq.data(), po.data(), d, pp.data(), 9, 9});
    comp->after_forward(kv, seq);
    EXPECT_EQ(kv.head_len(seq, 0, 0), n);
  }
  EXPECT_TRUE(comp->scoring_pass(kv, seq).empty());  // done: the prompt is compressed
  std::set<int32_t> kept;
  for (int i = 0; i < kv.head_len(seq, 0, 0); ++i) kept.insert(kv.slot_position(seq, 0, 0, i));
  EXPECT_EQ(kept, (std::set<int32_t>{3, 6, 11}));
  EXPECT_TRUE(comp->prefill_done());
  // A context that leaves no room for a pass is refused before anything runs.
  auto tight =
      std::make_shared<KvCompressor>(make_policy("kvzip(sinks=0)", Budget::parse("3")), layout, 0, 64, RopeInfo{}, 64);
  EXPECT_THROW(tight->set_reconstruction_prompt({1}), Error);
}

// DuoAttention: the budget buys whole retrieval heads in profile order across layers; the others keep
// sinks + the recent window, and while decoding retrieval heads grow and streaming heads roll.
TEST(DuoAttention, TheBudgetBuysWholeRetrievalHeadsInProfileOrder) {
  DuoProfile prof;
  prof.n_layers = 1;
  prof.n_kv_heads = 2;
  prof.sinks = 1;
  prof.recent = 2;
  prof.scores = {{0.1, 0.9}};  // head 1 retrieves
  const std::string path = test::temp_path("duo-profile.json");
  prof.save(path);
  Constructed c(2, 2);
  const int n = 16;
  // Budget: 10 tokens per head = 7 candidates each beyond 1 sink + 2 recent, 14 in the layer: enough
  // for one head's 13 candidates (it keeps all 16 tokens); the other streams (3 tokens).
  c.prefill("duoattention(profile=" + path + ")", "10", {ones_rows(n, c.d()), ones_rows(n, c.d())},
            {ones_rows(n, c.d()), ones_rows(n, c.d())});
  EXPECT_EQ(c.kept(1).size(), 16u);
  EXPECT_EQ(c.kept(0), (std::set<int32_t>{0, 14, 15}));
  c.decode(std::vector<float>(static_cast<size_t>(c.d()), 1.0f));
  EXPECT_EQ(c.kept(1).size(), 17u);                      // grows
  EXPECT_EQ(c.kept(0), (std::set<int32_t>{0, 15, 16}));  // rolls
  // A profile of another shape, or none, is refused with the reason.
  EXPECT_THROW(make_policy("duoattention", Budget::parse("0.5")), Error);
  Constructed wrong(2, 1);
  EXPECT_THROW(wrong.prefill("duoattention(profile=" + path + ")", "9", {ones_rows(n, 8)}, {ones_rows(n, 8)}), Error);
}

// The calibration: a head whose queries look far back (beyond sinks + recent) deviates when streamed;
// a head that looks at its recent tokens does not.
TEST(DuoAttention, TheProfilerScoresLongRangeHeadsAsRetrieval) {
  ModelConfig mc;
  mc.n_layers = 1;
  mc.n_heads = 2;
  mc.n_kv_heads = 2;
  mc.head_dim = 8;
  DuoProfiler profiler(mc, 1, 8, 8);
  KvLayout layout{1, 2, 2, 8, DType::F32, 4};
  KvStore kv(layout);
  const SeqId seq = kv.create_sequence();
  const int n = 32, d = 8;
  std::vector<float> s(n, 0.1f), s1(n, 0.1f);
  std::vector<int> ax(n, 0), ax1(n, 0);
  s[10] = 5, ax[10] = 1;  // head 0's keys: far back, what its queries look for
  for (int i = n - 8; i < n; ++i) s1[static_cast<size_t>(i)] = 5, ax1[static_cast<size_t>(i)] = 2;  // head 1: recent
  const auto k0 = axis_rows(s, ax, d), k1 = axis_rows(s1, ax1, d);
  std::vector<float> vs(n, 1.0f);
  std::vector<int> va(n, 0);
  for (int i = 0; i < n; ++i) va[static_cast<size_t>(i)] = i % d;
  const auto vals = axis_rows(vs, va, d);
  for (int i = 0; i < n; ++i)
    for (int h = 0; h < 2; ++h)
      kv.append(seq, 0, h, &(h ? k1 : k0)[static_cast<size_t>(i * d)], &vals[static_cast<size_t>(i * d)], i);
  std::vector<float> q(static_cast<size_t>(n * 2 * d), 0.0f), out(q.size());
  std::vector<int32_t> pos(n);
  std::iota(pos.begin(), pos.end(), 0);
  for (int t = 0; t < n; ++t) {
    q[static_cast<size_t>((t * 2 + 0) * d + 1)] = 3.0f;
    q[static_cast<size_t>((t * 2 + 1) * d + 2)] = 3.0f;
  }
  profiler.begin_prompt(n);
  profiler.after_attention(kv, seq, {0, q.data(), out.data(), 2 * d, pos.data(), n});
  const DuoProfile p = profiler.profile("constructed");
  EXPECT_GT(p.scores[0][0], 10 * p.scores[0][1]) << p.scores[0][0] << " vs " << p.scores[0][1];
  EXPECT_EQ(p.rows, 8);
}

TEST(MethodRegistry, EveryMethodDeclaresItselfAndBuildsFromItsSchemaDefaults) {
  std::set<std::string> names;
  for (const PolicyInfo& p : policy_catalog()) {
    EXPECT_TRUE(names.insert(p.name).second) << p.name;
    EXPECT_FALSE(p.summary.empty()) << p.name;
    EXPECT_FALSE(p.paper.empty()) << p.name;
    EXPECT_FALSE(p.group.empty()) << p.name;
    if (p.name != "baklava" && p.name != "duoattention") {
      const auto policy = make_policy(p.example, Budget::parse("0.5"));
      EXPECT_EQ(policy->needs_budget(), p.budget == BudgetUse::Required || (p.composes && policy->needs_budget()))
          << p.name;
    }
    EXPECT_NE(policy_help().find(p.name), std::string::npos) << p.name;
    EXPECT_NE(policy_table_markdown().find("`" + p.name), std::string::npos) << p.name;
  }
  for (const char* n :
       {"knorm", "keydiff", "tova", "chunkkv", "criticalkv", "expected-attention", "decoding", "kvzip", "duoattention"})
    EXPECT_TRUE(names.count(n)) << n;
  // The schema is what runs: a typo lists the parameters, a range is enforced.
  try {
    make_policy("knorm(windw=4)", Budget::parse("0.5"));
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("its parameters: sinks, window, decode_every"), std::string::npos) << e.what();
  }
  EXPECT_THROW(make_policy("chunkkv(chunk=0)", Budget::parse("0.5")), Error);
  EXPECT_THROW(make_policy("criticalkv(kv-int4)", Budget::parse("0.5")), Error);
  EXPECT_THROW(make_policy("decoding(gate)", Budget::parse("0.5")), Error);
  EXPECT_THROW(make_policy("knorm(snapkv)", Budget::parse("0.5")), Error);
  // Compositions inherit whether a budget is needed.
  EXPECT_TRUE(make_policy("mikv(knorm)", Budget{})->needs_budget());
  EXPECT_FALSE(make_policy("kv-int4", Budget{})->needs_budget());
  EXPECT_FALSE(make_policy("kv-int4", Budget{})->reads_budget());
  EXPECT_FALSE(make_policy("gate", Budget{})->needs_budget());
  EXPECT_TRUE(make_policy("gate", Budget{})->reads_budget());
}

TEST(MethodRegistry, TheDocsTableIsTheGeneratedOne) {
  std::ifstream f(std::string(KVWISE_SOURCE_DIR) + "/docs/compression.md");
  ASSERT_TRUE(f.good());
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string doc = ss.str();
  const std::string begin = "<!-- policies:begin (kvwise policies --markdown) -->\n", end = "<!-- policies:end -->";
  const size_t a = doc.find(begin), b = doc.find(end);
  ASSERT_NE(a, std::string::npos);
  ASSERT_NE(b, std::string::npos);
  EXPECT_TRUE(doc.substr(a + begin.size(), b - a - begin.size()) == policy_table_markdown())
      << "docs/compression.md's policy table is out of date: regenerate it with `kvwise policies --markdown`";
}

}  // namespace
}  // namespace kvwise
