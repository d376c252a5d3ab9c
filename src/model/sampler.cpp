#include "model/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "base/error.h"

namespace kvwise {

int32_t argmax(const float* logits, int n) {
  return static_cast<int32_t>(std::max_element(logits, logits + n) - logits);
}

Sampler::Sampler(const SamplerParams& p) : p_(p), rng_(p.seed) {
  KV_CHECK(p.temperature >= 0, "temperature must be >= 0");
  KV_CHECK(p.top_k >= 0, "top-k must be >= 0");
  KV_CHECK(p.top_p > 0 && p.top_p <= 1, "top-p must be in (0, 1]");
}

int32_t Sampler::sample(const float* logits, int n) {
  if (p_.temperature <= 0) return argmax(logits, n);
  std::vector<int32_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  const int k = p_.top_k > 0 ? std::min(p_.top_k, n) : n;
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                    [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  idx.resize(static_cast<size_t>(k));
  std::vector<double> prob(idx.size());
  const double mx = logits[idx[0]];
  double sum = 0;
  for (size_t i = 0; i < idx.size(); ++i) sum += prob[i] = std::exp((logits[idx[i]] - mx) / p_.temperature);
  double cum = 0;
  size_t keep = idx.size();
  for (size_t i = 0; i < idx.size(); ++i) {
    cum += prob[i] / sum;
    if (cum >= p_.top_p) {
      keep = i + 1;
      break;
    }
  }
  std::discrete_distribution<size_t> dist(prob.begin(), prob.begin() + static_cast<std::ptrdiff_t>(keep));
  return idx[dist(rng_)];
}

float token_log_prob(const float* logits, int n, int32_t token) {
  double m = -INFINITY;
  for (int i = 0; i < n; ++i) m = std::max<double>(m, logits[i]);
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += std::exp(static_cast<double>(logits[i]) - m);
  return static_cast<float>(logits[token] - (m + std::log(sum)));
}

std::vector<std::pair<int32_t, float>> top_log_probs(const float* logits, int n, int k) {
  k = std::clamp(k, 0, n);
  double m = -INFINITY;
  for (int i = 0; i < n; ++i) m = std::max<double>(m, logits[i]);
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += std::exp(static_cast<double>(logits[i]) - m);
  const double log_z = m + std::log(sum);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) ids[static_cast<size_t>(i)] = i;
  std::partial_sort(ids.begin(), ids.begin() + k, ids.end(),
                    [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
  std::vector<std::pair<int32_t, float>> out;
  for (int i = 0; i < k; ++i)
    out.emplace_back(ids[static_cast<size_t>(i)], static_cast<float>(logits[ids[static_cast<size_t>(i)]] - log_z));
  return out;
}

}  // namespace kvwise
