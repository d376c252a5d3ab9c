#include "compress/select.h"

#include <algorithm>
#include <numeric>

#include "base/error.h"

namespace kvwise {

Pooling parse_pooling(const std::string& name) {
  if (name == "none") return Pooling::None;
  if (name == "avg") return Pooling::Avg;
  if (name == "max") return Pooling::Max;
  fail("unknown pooling \"{}\" (none, avg, max)", name);
}

GroupReduce parse_group_reduce(const std::string& name) {
  if (name == "mean") return GroupReduce::Mean;
  if (name == "max") return GroupReduce::Max;
  if (name == "sum") return GroupReduce::Sum;
  fail("unknown GQA reduction \"{}\" (mean, max, sum)", name);
}

std::vector<float> pool1d(std::span<const float> x, Pooling kind, int kernel) {
  const int n = static_cast<int>(x.size());
  if (kind == Pooling::None || kernel <= 1 || n == 0) return {x.begin(), x.end()};
  KV_CHECK(kernel % 2 == 1, "pooling kernel must be odd, not {}", kernel);
  const int r = kernel / 2;
  std::vector<float> out(static_cast<size_t>(n));
  if (kind == Pooling::Avg) {
    // Running sum over the window [j - r, j + r].
    double s = 0;
    for (int j = 0; j <= std::min(r, n - 1); ++j) s += x[static_cast<size_t>(j)];
    for (int j = 0; j < n; ++j) {
      out[static_cast<size_t>(j)] = static_cast<float>(s / kernel);
      if (j + r + 1 < n) s += x[static_cast<size_t>(j + r + 1)];
      if (j - r >= 0) s -= x[static_cast<size_t>(j - r)];
    }
  } else {
    for (int j = 0; j < n; ++j) {
      float m = x[static_cast<size_t>(j)];
      for (int u = std::max(0, j - r); u <= std::min(n - 1, j + r); ++u) m = std::max(m, x[static_cast<size_t>(u)]);
      out[static_cast<size_t>(j)] = m;
    }
  }
  return out;
}

std::vector<float> reduce_group(std::span<const std::vector<float>> rows, GroupReduce how) {
  KV_CHECK(!rows.empty(), "reduce_group: no rows");
  std::vector<float> out = rows[0];
  for (size_t g = 1; g < rows.size(); ++g) {
    KV_CHECK(rows[g].size() == out.size(), "reduce_group: rows of different lengths");
    for (size_t j = 0; j < out.size(); ++j)
      out[j] = how == GroupReduce::Max ? std::max(out[j], rows[g][j]) : out[j] + rows[g][j];
  }
  if (how == GroupReduce::Mean)
    for (float& v : out) v /= static_cast<float>(rows.size());
  return out;
}

std::vector<int> top_k_indices(std::span<const float> x, int k) {
  const int n = static_cast<int>(x.size());
  std::vector<int> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  if (k >= n) return idx;
  if (k <= 0) return {};
  const auto better = [&](int a, int b) {
    const float xa = x[static_cast<size_t>(a)], xb = x[static_cast<size_t>(b)];
    return xa != xb ? xa > xb : a > b;
  };
  std::nth_element(idx.begin(), idx.begin() + k, idx.end(), better);
  idx.resize(static_cast<size_t>(k));
  std::sort(idx.begin(), idx.end());
  return idx;
}

}  // namespace kvwise
