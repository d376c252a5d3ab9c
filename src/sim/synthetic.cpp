#include "sim/synthetic.h"

#include <algorithm>
#include <cmath>
#include <queue>
#include <random>

#include "base/error.h"

namespace kvwise::sim {

Trace generate_synthetic(const SyntheticOptions& o) {
  KV_CHECK(o.requests > 0 && o.rate > 0 && o.block_tokens > 0 && !o.types.empty(),
           "invalid synthetic workload options");
  std::mt19937_64 rng(o.seed);
  std::vector<double> w;
  for (const auto& t : o.types) w.push_back(t.weight);
  std::discrete_distribution<size_t> pick_type(w.begin(), w.end());
  std::uniform_real_distribution<double> u01(0.0, 1.0);
  prefix::BlockKey next_key = 1;
  // System prompt keys per type, with Zipf popularity among a type's prompts.
  std::vector<std::vector<std::vector<prefix::BlockKey>>> sys(o.types.size());
  std::vector<std::discrete_distribution<int>> pick_sys;
  for (size_t t = 0; t < o.types.size(); ++t) {
    std::vector<double> zipf;
    for (int i = 0; i < o.types[t].system_prompts; ++i) {
      std::vector<prefix::BlockKey> keys;
      for (int b = 0; b < o.types[t].system_blocks; ++b) keys.push_back(next_key++);
      sys[t].push_back(keys);
      zipf.push_back(1.0 / (i + 1));
    }
    pick_sys.emplace_back(zipf.begin(), zipf.end());
  }
  struct Pending {
    double time;
    size_t type;
    int turn;
    int64_t parent;
    std::vector<prefix::BlockKey> context;  // prompt + answer of the previous turn
    bool operator>(const Pending& p) const { return time > p.time; }
  };
  std::priority_queue<Pending, std::vector<Pending>, std::greater<>> follow_ups;
  Trace trace;
  trace.format = "synthetic";
  trace.source = "synthetic";
  trace.block_tokens = o.block_tokens;
  double clock = 0;
  int64_t next_chat = 0;
  const auto geometric = [&](int mean) {
    std::geometric_distribution<int> g(1.0 / std::max(1, mean));
    return 1 + g(rng);
  };
  while (static_cast<int>(trace.requests.size()) < o.requests) {
    const double next_new = clock + std::exponential_distribution<double>(o.rate)(rng);
    Pending p;
    if (!follow_ups.empty() && follow_ups.top().time <= next_new) {
      p = follow_ups.top();
      follow_ups.pop();
    } else {
      clock = next_new;
      p.time = clock;
      p.type = pick_type(rng);
      p.turn = 1;
      p.parent = -1;
      p.context = sys[p.type][static_cast<size_t>(pick_sys[p.type](rng))];
    }
    const SyntheticType& ty = o.types[p.type];
    TraceRequest r;
    r.time = p.time;
    r.chat_id = next_chat++;
    r.parent_chat_id = p.parent;
    r.type = ty.name;
    r.turn = p.turn;
    r.blocks = p.context;
    const int user = geometric(ty.user_blocks_mean);
    for (int b = 0; b < user; ++b) r.blocks.push_back(next_key++);
    r.input_tokens = static_cast<uint32_t>(r.blocks.size()) * static_cast<uint32_t>(o.block_tokens);
    r.output_tokens = static_cast<uint32_t>(geometric(o.output_tokens_mean));
    if (p.turn < o.max_turns && u01(rng) < ty.multi_turn) {
      Pending f;
      f.type = p.type;
      f.turn = p.turn + 1;
      f.parent = r.chat_id;
      f.time = p.time + std::exponential_distribution<double>(1.0 / (ty.mean_gap * std::pow(1.5, p.turn - 1)))(rng);
      f.context = r.blocks;
      const int answer_blocks = static_cast<int>(r.output_tokens) / o.block_tokens;
      for (int b = 0; b < answer_blocks; ++b) f.context.push_back(next_key++);
      follow_ups.push(std::move(f));
    }
    trace.requests.push_back(std::move(r));
  }
  std::stable_sort(trace.requests.begin(), trace.requests.end(),
                   [](const TraceRequest& a, const TraceRequest& b) { return a.time < b.time; });
  return trace;
}

}  // namespace kvwise::sim
