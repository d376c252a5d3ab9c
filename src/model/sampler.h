// Next-token sampling: greedy at temperature 0, else temperature + top-k + top-p with a seeded RNG.
#pragma once
#include <cstdint>
#include <random>

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

}  // namespace kvwise
