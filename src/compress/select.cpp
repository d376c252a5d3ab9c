#include "compress/select.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
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

namespace {
// Floats as unsigned keys in the same order (negative values flipped), so selection can bucket bits.
inline uint32_t order_key(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  const uint32_t neg = static_cast<uint32_t>(static_cast<int32_t>(b) >> 31);  // all ones if negative
  return b ^ (neg | 0x80000000u);
}
}  // namespace

std::vector<int> top_k_indices(std::span<const float> x, int k) {
  const int n = static_cast<int>(x.size());
  std::vector<int> idx;
  if (k >= n) {
    idx.resize(static_cast<size_t>(n));
    std::iota(idx.begin(), idx.end(), 0);
    return idx;
  }
  if (k <= 0) return idx;
  // The k-th largest key by one histogram pass over the top 11 bits, a second histogram of the next
  // 11 bits among the keys of the chosen bucket (scores of similar size, e.g. a flat attention row,
  // share the top bits), and a selection among the few keys left (O(n), no comparator calls per
  // element); then the indices above it and, among ties at it, the latest ones (the order: larger
  // score first, then larger index).
  constexpr int kShift = 21, kShift2 = 10;
  thread_local std::vector<int> hist;
  thread_local std::vector<uint32_t> cand, cand2;
  hist.assign(size_t{1} << (32 - kShift), 0);
  for (float a : x) ++hist[order_key(a) >> kShift];
  int need = k, above = 0;
  uint32_t bucket = static_cast<uint32_t>(hist.size() - 1);
  while (hist[bucket] < need) {
    need -= hist[bucket];
    above += hist[bucket--];
  }
  cand.clear();
  for (float a : x)
    if (const uint32_t key = order_key(a); key >> kShift == bucket) cand.push_back(key);
  std::vector<uint32_t>* sel = &cand;  // the keys the k-th largest is selected among
  if (cand.size() > 256) {
    constexpr uint32_t kMask2 = (1u << (kShift - kShift2)) - 1;
    hist.assign(size_t{1} << (kShift - kShift2), 0);
    for (uint32_t key : cand) ++hist[(key >> kShift2) & kMask2];
    uint32_t b2 = kMask2;
    while (hist[b2] < need) need -= hist[b2--];
    cand2.clear();
    for (uint32_t key : cand)
      if (((key >> kShift2) & kMask2) == b2) cand2.push_back(key);
    sel = &cand2;
  }
  std::nth_element(sel->begin(), sel->begin() + (need - 1), sel->end(), std::greater<uint32_t>());
  const uint32_t thr = (*sel)[static_cast<size_t>(need - 1)];
  for (uint32_t key : cand) above += key > thr;
  int ties = k - above;
  std::vector<int> tie_idx;
  for (int i = n - 1; i >= 0 && ties > 0; --i)
    if (order_key(x[static_cast<size_t>(i)]) == thr) tie_idx.push_back(i), --ties;
  idx.reserve(static_cast<size_t>(k));
  size_t ti = tie_idx.size();
  for (int i = 0; i < n; ++i) {
    const uint32_t key = order_key(x[static_cast<size_t>(i)]);
    if (key > thr)
      idx.push_back(i);
    else if (ti > 0 && tie_idx[ti - 1] == i)
      idx.push_back(i), --ti;
  }
  return idx;
}

}  // namespace kvwise
