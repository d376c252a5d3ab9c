#include "compress/registry.h"

#include <functional>
#include <map>

#include "base/error.h"
#include "compress/baklava.h"
#include "compress/components.h"
#include "compress/policy_spec.h"

namespace kvwise {

namespace {

constexpr int kMaxWindow = 1 << 20;

// Window-scored selection knobs shared by SnapKV, PyramidKV and Ada-KV.
struct WindowDefaults {
  int window, kernel;
  const char* pool;
};

void window_scoring(KvPolicy& p, SpecParams& q, WindowDefaults d) {
  p.window_explicit = q.has("window");
  p.window = q.get_int("window", d.window, 1, kMaxWindow);
  p.kernel = q.get_int("kernel", d.kernel, 1, 1001);
  KV_CHECK(p.kernel % 2 == 1, "{}: kernel={} must be odd", p.name, p.kernel);
  p.pooling = parse_pooling(q.get_choice("pool", d.pool, {"none", "avg", "max"}));
  p.reduce = parse_group_reduce(q.get_choice("gqa", "mean", {"mean", "max", "sum"}));
  p.pool_first = q.get_choice("order", "reduce_first", {"reduce_first", "pool_first"}) == "pool_first";
  p.scorer = make_window_scorer(p.window);
  p.decode_pooling = p.pooling;
  p.decode_kernel = p.kernel;
  const int every = q.get_int("decode_every", 0, 0, 1 << 20);
  p.decode = every > 0 ? make_evict(every) : make_grow();
}

void build(KvPolicy& p, const PolicySpec& spec, const PolicySource& src);

void build_inner(KvPolicy& p, const PolicySpec& spec, const char* default_inner, const PolicySource& src) {
  KV_CHECK(spec.inner.size() <= 1, "{} takes at most one inner policy", spec.name);
  const PolicySpec inner = spec.inner.empty() ? parse_policy_spec(default_inner) : spec.inner[0];
  build(p, inner, src);
}

// Parameters that carry a path: only the CLI's user may give them.
void refuse_paths(const PolicySpec& spec, const PolicySource& src) {
  if (src.trusted) return;
  for (const char* key : {"path", "dir", "file"})
    KV_CHECK(!spec.params.count(key),
             "{}: parameter '{}' names a file, and a request cannot name files on the server ({})", spec.name, key,
             std::string(key) == "file" ? "use gate(name=NAME) with a gate the operator registered by --gate NAME=FILE"
                                        : "SpeCache's cold files go to the operator's --cold-dir");
}

// A registered file by name; the name is echoed only when it is a plain name.
const std::string& registered(const std::map<std::string, std::string>& files, const std::string& name,
                              const char* what, const char* flag) {
  auto it = files.find(name);
  if (it != files.end()) return it->second;
  const bool plain = !name.empty() && name.size() <= 64 && name.find_first_of("/\\") == std::string::npos;
  std::string known;
  for (const auto& [k, v] : files) known += (known.empty() ? "" : ", ") + k;
  fail("no {} named {} is registered on this server (the operator registers them with {} NAME=FILE; known: {})", what,
       plain ? "'" + name + "'" : std::string("so"), flag, known.empty() ? "none" : known);
}

void build(KvPolicy& p, const PolicySpec& spec, const PolicySource& src) {
  const std::string& n = spec.name;
  refuse_paths(spec, src);
  SpecParams q(spec);
  p.name = n;
  p.layers = make_uniform_layers();
  p.heads = make_uniform_heads();
  p.disposition = make_drop();
  p.decode = make_grow();
  if (n != "adakv" && n != "baklava" && n != "mikv")
    KV_CHECK(spec.inner.empty(), "{} does not take an inner policy (only adakv, baklava and mikv compose)", n);
  if (n == "full") {
    p.full = true;
  } else if (n == "random") {
    p.window_explicit = q.has("window");
    p.window = q.get_int("window", 32, 0, kMaxWindow);
    p.sinks = q.get_int("sinks", 0, 0, kMaxWindow);
    p.scorer = make_random_scorer(static_cast<uint64_t>(q.get_int("seed", 0, 0, 1 << 30)));
    // Within budget during decode by default (recent FIFO), like the constant-memory methods.
    p.decode = q.get_choice("decode", "fifo", {"fifo", "grow"}) == "fifo" ? make_fifo() : make_grow();
  } else if (n == "streamingllm") {
    p.sinks = q.get_int("sinks", 4, 0, kMaxWindow);
    p.window_fills = true;
    p.rerotate = q.get_int("rerotate", 0, 0, 1) == 1;
    p.scorer = make_position_scorer();
    p.decode = make_fifo();
  } else if (n == "h2o") {
    p.window_fraction = q.get_double("recent", 0.5, 0.0, 1.0);
    p.sinks = q.get_int("sinks", 0, 0, kMaxWindow);
    p.scorer = make_cumulative_scorer();
    p.decode = make_evict(1);
    p.needs_every_prompt_query = true;
    if (p.window_fraction == 0) p.window_fraction = 1e-9;  // ceil gives a one-token recent window
  } else if (n == "snapkv") {
    window_scoring(p, q, {32, 5, "avg"});
  } else if (n == "pyramidkv") {
    window_scoring(p, q, {8, 7, "max"});
    p.layers = make_pyramid_layers(q.get_double("beta", 20.0, 1.0, 1e6));
  } else if (n == "cake") {
    p.window_explicit = q.has("window");
    p.window = q.get_int("window", 32, 2, kMaxWindow);
    p.kernel = q.get_int("kernel", 5, 1, 1001);
    KV_CHECK(p.kernel % 2 == 1, "cake: kernel={} must be odd", p.kernel);
    p.pooling = p.decode_pooling = Pooling::Avg;
    p.decode_kernel = p.kernel;
    p.scorer = make_cake_scorer(p.window, q.get_double("gamma", 200.0, 0.0, 1e9));
    const double tau1 = q.get_double("tau1", 1.0, 0.01, 100.0), tau2 = q.get_double("tau2", 1.0, 0.01, 100.0);
    p.layers = make_cake_layers(tau1, tau2, q.get_int("cascade", 1, 0, 1) == 1);
    const int every = q.get_int("decode_every", 1, 0, 1 << 20);
    p.decode = every > 0 ? make_evict(every) : make_grow();
  } else if (n == "sagekv") {
    p.sinks = q.get_int("sinks", 4, 0, kMaxWindow);
    p.window = q.get_int("recent", 32, 0, kMaxWindow) + 1;  // + the last prompt token
    p.window_explicit = q.has("recent");
    p.reduce = parse_group_reduce(q.get_choice("gqa", "mean", {"mean", "max", "sum"}));
    p.scorer = make_last_query_scorer();
    p.decode = q.get_choice("decode", "fifo", {"fifo", "grow"}) == "fifo" ? make_fifo() : make_grow();
  } else if (n == "adakv") {
    const double alpha = q.get_double("alpha", 0.2, 0.0, 1.0);
    build_inner(p, spec, "snapkv(kernel=7,pool=max)", src);
    KV_CHECK(!p.full && p.name != "streamingllm" && p.name != "random",
             "adakv composes with a scoring policy (snapkv, pyramidkv, cake, sagekv, h2o, baklava), not {}", p.name);
    p.heads = make_adakv_heads(alpha);
    p.name = "adakv";
  } else if (n == "baklava") {
    const std::string given = q.get_string("profile", "");
    KV_CHECK(!given.empty(), "baklava needs profile={}",
             src.trusted ? "FILE (write one with `kvwise profile`)" : "NAME (a profile the operator registered)");
    // The CLI's profile= is a path unless it names a registered profile; a request's is a name only.
    const std::string path = src.trusted && !src.profiles.count(given)
                                 ? given
                                 : registered(src.profiles, given, "BaKlaVa profile", "--profile");
    const double theta = q.get_double("theta", -1.0, -1.0, 100.0);
    build_inner(p, spec, "snapkv", src);
    KV_CHECK(!p.full && !p.layers->adaptive(), "baklava composes with snapkv, sagekv, h2o, streamingllm or random");
    BaklavaProfile prof = BaklavaProfile::load(path);
    if (theta >= 0) prof.set_theta(theta);
    std::vector<double> layer_w;
    for (const auto& row : prof.weights) {
      double s = 0;
      for (double w : row) s += w;
      layer_w.push_back(s);
    }
    p.layers = make_weighted_layers(layer_w, "baklava");
    p.heads = make_weighted_heads(prof.weights, "baklava");
    p.name = "baklava";
  } else if (n == "kv-int8" || n == "kv-int4" || n == "kv-int2" || n == "kv-quant") {
    // Uniform KV quantisation (llama.cpp's q8_0/q4_0 KV types, KIVI): every token but the recent
    // residual lives low-bit; the budget does not apply.
    const std::string bits = q.get_string("bits", n == "kv-int8" ? "int8" : n == "kv-int2" ? "int2" : "int4");
    QuantFormat f;
    f.key = parse_precision(q.get_string("k", bits));
    f.value = parse_precision(q.get_string("v", bits));
    f.key_per_channel = q.get_choice("keys", "token", {"token", "channel"}) == "channel";
    f.group = q.get_int("group", 32, 8, 4096);
    p.residual = q.get_int("residual", 32, 0, kMaxWindow);
    f.validate(f.group);  // what can be checked before the model's head_dim is known
    p.scorer = make_position_scorer();
    p.disposition = make_demote({f, std::nullopt, false});
    p.decode = make_fifo();
  } else if (n == "mikv") {
    // MiKV: the inner policy's losers are demoted to low bits instead of dropped.
    DemoteOptions o;
    o.low.key = o.low.value = parse_precision(q.get_string("lo", "int2"));
    o.low.key_per_channel = q.get_choice("keys", "token", {"token", "channel"}) == "channel";
    o.low.group = q.get_int("group", 32, 8, 4096);
    const KvPrecision hi = parse_precision(q.get_string("hi", "f16"));
    if (hi != KvPrecision::F16) {
      QuantFormat h = o.low;
      h.key = h.value = hi;
      o.high = h;
    }
    o.balance = q.get_int("balance", 1, 0, 1) == 1;
    o.low.validate(o.low.group);
    build_inner(p, spec, "h2o", src);
    KV_CHECK(!p.full && p.residual < 0 && !p.specache && p.name != "mikv",
             "mikv composes with an eviction policy (h2o, snapkv, pyramidkv, adakv, cake, sagekv, streamingllm, "
             "random, baklava), not {}",
             p.name);
    p.disposition = make_demote(o);
    p.balance = o.balance;
    p.name = "mikv";
  } else if (n == "gate") {
    auto c = std::make_shared<GateConfig>();
    c->rate = q.has("rate") ? q.get_double("rate", 0.5, 0.0, 1.0) : -1.0;
    c->file = q.get_string("file", "");
    if (q.has("name")) {
      KV_CHECK(c->file.empty(), "gate: give name= or file=, not both");
      c->file = registered(src.gates, q.get_string("name", ""), "gate", "--gate");
    }
    p.sinks = q.get_int("sinks", 4, 0, kMaxWindow);
    p.window = q.get_int("window", 16, 0, kMaxWindow);
    p.window_explicit = q.has("window");
    p.scorer = make_position_scorer();  // unused: the gate's own scores rank tokens
    p.decode = make_grow();             // the gate itself evicts during decode
    p.gate = c;
    p.needs_every_prompt_query = true;
  } else if (n == "specache") {
    auto c = std::make_shared<SpeCacheConfig>();
    const std::string bits = q.get_string("bits", "int2");
    c->low.key = parse_precision(q.get_string("k", bits));
    c->low.value = parse_precision(q.get_string("v", bits));
    c->low.key_per_channel = q.get_choice("keys", "channel", {"token", "channel"}) == "channel";
    c->low.group = q.get_int("group", 64, 8, 4096);
    c->residual = q.get_int("residual", 64, 0, kMaxWindow);
    c->top_k = q.get_int("topk", 64, 0, kMaxWindow);
    c->cold_in_file = q.get_choice("cold", "file", {"file", "memory"}) == "file";
    c->dir = src.trusted ? q.get_string("dir", "") : src.cold_dir;
    c->path = q.get_string("path", "");
    const std::string prefetch = q.get_choice("prefetch", "auto", {"auto", "thread", "sync"});
    c->prefetch = prefetch == "thread" ? SpeCacheConfig::Prefetch::Thread
                  : prefetch == "sync" ? SpeCacheConfig::Prefetch::Sync
                                       : SpeCacheConfig::Prefetch::Auto;
    c->hit_every = q.get_int("hit_every", 8, 1, 1 << 20);
    c->low.validate(c->low.group);
    p.residual = c->residual;
    p.scorer = make_position_scorer();
    p.disposition = make_demote({c->low, std::nullopt, false});
    p.decode = make_fifo();
    p.specache = c;
  } else {
    fail("unknown KV policy \"{}\"; known policies:\n{}", n.size() > 64 ? n.substr(0, 64) + "..." : n, policy_help());
  }
  q.check_all_used();
}

}  // namespace

std::shared_ptr<const KvPolicy> make_policy(std::string_view text, const Budget& budget, const PolicySource& source) {
  const PolicySpec spec = parse_policy_spec(text);
  auto p = std::make_shared<KvPolicy>();
  build(*p, spec, source);
  p->spec = spec.to_string();
  p->name = spec.name;
  p->budget = budget;
  return p;
}

const std::vector<PolicyInfo>& policy_catalog() {
  static const std::vector<PolicyInfo> c = {
      {"full", "no compression (the reference)", ""},
      {"random", "random prefix tokens + the window, recent FIFO during decode (a baseline that must lose)",
       "window=32, sinks=0, seed=0, decode=fifo|grow"},
      {"streamingllm", "attention sinks + the most recent tokens, rolling during decode",
       "sinks=4, rerotate=0 (1: cache-relative positions)"},
      {"h2o", "heavy hitters by cumulative attention + a recent window, one eviction per decode step",
       "recent=0.5 (share of the budget), sinks=0"},
      {"snapkv", "observation-window attention, pooled; cache grows during decode",
       "window=32, kernel=5, pool=avg, gqa=mean, order=reduce_first, decode_every=0"},
      {"pyramidkv", "SnapKV scores with pyramid layer budgets",
       "window=8, kernel=7, pool=max, beta=20, decode_every=0"},
      {"adakv", "Ada-KV head budgets over an inner scorer (default snapkv(kernel=7,pool=max))", "alpha=0.2"},
      {"cake", "CAKE: layer budgets from entropy and variance, cascading during prefill, its indicator",
       "window=32, gamma=200, kernel=5, tau1=1, tau2=1, cascade=1, decode_every=1"},
      {"sagekv", "SAGE-KV: sinks + top-k by the last prompt query + recent FIFO",
       "sinks=4, recent=32, gqa=mean, decode=fifo|grow"},
      {"baklava", "BaKlaVa static head budgets from `kvwise profile` over an inner selector (default snapkv)",
       "profile=FILE (CLI) or NAME (registered on the server), theta=(from the profile)"},
      {"kv-int8", "uniform 8-bit KV (per-group scale and zero), recent residual exact; ignores the budget",
       "k=, v= (precision), keys=token|channel, group=32, residual=32"},
      {"kv-int4", "uniform 4-bit KV, as kv-int8", "k=, v=, keys=token|channel, group=32, residual=32"},
      {"kv-int2", "uniform 2-bit KV, as kv-int8", "k=, v=, keys=token|channel, group=32, residual=32"},
      {"kv-quant", "uniform KV quantisation of any precision (f16, bf16, int8, int4, int2, int1)",
       "bits=int4, k=, v=, keys=token|channel, group=32, residual=32"},
      {"mikv", "MiKV: the inner policy's losers (default h2o) are kept at low bits instead of dropped",
       "lo=int2, hi=f16|int8|int4, keys=token|channel, group=32, balance=1"},
      {"gate",
       "Attention-Gate: a learned gate (side file <model>.gate.gguf) flags each token per KV head when it is "
       "appended; flagged tokens leave the cache, a budget caps each head by the gate's scores",
       "rate= (target eviction rate; default 1 - budget, else threshold 0.5), sinks=4, window=16, file= (CLI), "
       "name= (a gate the server registered)"},
      {"specache",
       "SpeCache: full KV in a cold tier, low-bit copy hot, top-k exact pairs prefetched by a speculative token",
       "bits=int2, k=, v=, topk=64, keys=channel|token, group=64, residual=64, cold=file|memory, dir=, path=, "
       "prefetch=auto|thread|sync, hit_every=8"},
  };
  return c;
}

std::string policy_help() {
  std::string s;
  for (const PolicyInfo& p : policy_catalog())
    s += fmt::format("  {:<13} {}{}\n", p.name, p.summary, p.params.empty() ? "" : " [" + p.params + "]");
  return s;
}

}  // namespace kvwise
