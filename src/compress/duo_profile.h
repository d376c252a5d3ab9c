// DuoAttention (Xiao et al., arXiv:2410.10819) splits KV heads into retrieval heads (the full cache)
// and streaming heads (attention sinks + a recent window). The paper learns a gate per head by
// optimisation on synthetic passkey retrieval; kvwise calibrates once, without training, with the
// quantity that gate is trained to predict: how much a head's attention output changes when it sees
// only its sinks and recent window, on retrieval prompts [approximation, docs/compression.md]. The
// profile file is JSON:
//   {"format": "kvwise-duo-profile-1", "model": ..., "n_layers": L, "n_kv_heads": H, "sinks": S,
//    "recent": W, "queries": Q, "scores": [[...]...]}
// scores[l][h] = mean over the last Q queries of each prompt (and the GQA group) of
// ||o_full - o_streaming||^2 / ||o_full||^2: larger = more of a retrieval head.
#pragma once
#include <string>
#include <vector>

#include "model/forward.h"

namespace kvwise {

struct DuoProfile {
  std::string model;
  int n_layers = 0, n_kv_heads = 0;
  int sinks = 4, recent = 32, queries = 64;
  long rows = 0;                            // queries measured
  std::vector<std::vector<double>> scores;  // [layer][kv head]

  void save(const std::string& path) const;
  static DuoProfile load(const std::string& path);  // throws kvwise::Error naming the file and the problem
};

// Measures the streaming deviation of every KV head while prompts are prefilled (attach it with
// Engine::observe before each prompt runs; it never changes the cache). Not thread-safe.
class DuoProfiler : public SequenceObserver {
 public:
  DuoProfiler(const ModelConfig& config, int sinks, int recent, int queries);
  // The next prompt ends at this position: its last `queries` queries are measured (0: the last
  // queries of every forward step).
  void begin_prompt(int32_t end) { end_ = end; }
  void after_attention(KvStore& kv, SeqId seq, const Attention& a) override;
  DuoProfile profile(const std::string& model_name) const;

 private:
  ModelConfig c_;
  int sinks_, recent_, queries_;
  int32_t end_ = 0;
  std::vector<double> sum_;  // [layer * n_kv + h]
  std::vector<long> count_;
};

}  // namespace kvwise
