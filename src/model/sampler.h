// Next-token sampling: greedy at temperature 0, else temperature + top-k + top-p with a seeded RNG.
#pragma once
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

namespace kvwise {

struct SamplerParams {
  float temperature = 0.8f;
  int top_k = 40;       // 0 = all tokens
  float top_p = 0.95f;  // 1 = off
  uint64_t seed = 42;
};

class Sampler {
 public:
  explicit Sampler(const SamplerParams& p);
  int32_t sample(const float* logits, int n_vocab);

 private:
  SamplerParams p_;
  std::mt19937_64 rng_;
};

int32_t argmax(const float* logits, int n);

// The k most likely tokens of a logits row and their log-probabilities (log-softmax), most likely
// first; ties go to the lower id.
std::vector<std::pair<int32_t, float>> top_log_probs(const float* logits, int n, int k);
// log softmax(logits)[token].
float token_log_prob(const float* logits, int n, int32_t token);

}  // namespace kvwise
