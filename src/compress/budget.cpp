#include "compress/budget.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <numeric>

#include "base/error.h"
#include "compress/select.h"

namespace kvwise {

Budget Budget::parse(std::string_view text) {
  std::string t(text);
  bool percent = false;
  if (!t.empty() && t.back() == '%') {
    percent = true;
    t.pop_back();
  }
  double x = 0;
  auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), x);
  KV_CHECK(ec == std::errc() && p == t.data() + t.size() && !t.empty(),
           "KV budget \"{}\" is not a number (a ratio like 0.25, a percentage like 25% or tokens like 256)",
           std::string(text));
  if (percent) x /= 100.0;
  KV_CHECK(x > 0 && std::isfinite(x), "KV budget \"{}\" must be positive", std::string(text));
  KV_CHECK(!percent || x <= 1.0,
           "KV budget \"{}\" is more than the whole prompt: a share is at most 100% (or give tokens, like 256)",
           std::string(text));
  Budget b;
  if (!percent && x > 1.0) {
    KV_CHECK(x == std::floor(x) && x < 1e9, "KV budget \"{}\": a token count must be a whole number",
             std::string(text));
    b.tokens = static_cast<int>(x);
  } else {
    b.ratio = x;
  }
  return b;
}

int Budget::capacity(int prompt_tokens) const {
  if (tokens > 0) return tokens;
  return std::max(1, static_cast<int>(std::lround(ratio * prompt_tokens)));
}

std::string Budget::to_string() const {
  if (tokens > 0) return std::to_string(tokens);
  std::string s = fmt::format("{:.4f}", ratio);
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  return s;
}

std::vector<int> split_proportional(long total, std::span<const double> weights, std::span<const int> caps) {
  const size_t n = weights.size();
  KV_CHECK(caps.size() == n, "split: {} weights but {} caps", n, caps.size());
  std::vector<int> out(n, 0);
  if (n == 0) return out;
  const long cap_sum = std::accumulate(caps.begin(), caps.end(), 0L);
  total = std::min(std::max(total, 0L), cap_sum);
  // Water-filling: give each open item its proportional share of what is left; items whose share
  // exceeds their cap are fixed at the cap and the rest is re-split, until no cap binds.
  std::vector<double> share(n, 0.0);
  std::vector<bool> capped(n, false);
  double left = static_cast<double>(total);
  for (;;) {
    double wsum = 0;
    size_t open = 0;
    for (size_t i = 0; i < n; ++i)
      if (!capped[i]) wsum += std::max(0.0, weights[i]), ++open;
    if (open == 0) break;
    bool changed = false;
    for (size_t i = 0; i < n; ++i) {
      if (capped[i]) continue;
      share[i] = wsum > 0 ? left * std::max(0.0, weights[i]) / wsum : left / static_cast<double>(open);
      if (share[i] > caps[i]) {
        share[i] = caps[i];
        capped[i] = true;
        left -= caps[i];
        changed = true;
      }
    }
    if (!changed) break;
  }
  long given = 0;
  for (size_t i = 0; i < n; ++i) {
    out[i] = std::min(caps[i], static_cast<int>(std::floor(share[i])));
    given += out[i];
  }
  // Largest remainder, then any item with room (ties to the first items).
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return share[a] - std::floor(share[a]) > share[b] - std::floor(share[b]);
  });
  while (given < total) {
    bool progress = false;
    for (size_t i : order) {
      if (given >= total) break;
      if (out[i] < caps[i]) {
        ++out[i];
        ++given;
        progress = true;
      }
    }
    if (!progress) break;
  }
  return out;
}

std::vector<int> pyramid_budgets(int n_layers, int mean, int candidates, double beta) {
  std::vector<int> caps(static_cast<size_t>(n_layers), candidates);
  std::vector<double> w(static_cast<size_t>(n_layers), 1.0);
  const long total = static_cast<long>(n_layers) * mean;
  if (n_layers > 1 && mean > 0 && beta > 0) {
    double min_b = mean / beta, max_b = 2.0 * mean - min_b;
    if (max_b > candidates) {
      max_b = candidates;
      min_b = 2.0 * mean - max_b;
    }
    if (min_b >= 0 && max_b >= min_b) {
      const double step = (max_b - min_b) / (n_layers - 1);
      for (int l = 0; l < n_layers; ++l) w[static_cast<size_t>(l)] = max_b - l * step;
    }
  }
  std::vector<int> b = split_proportional(total, w, caps);
  // Rounding may break monotonicity by one token between neighbours; restore it without changing
  // the sum (the pyramid is non-increasing with depth).
  for (int pass = 0; pass < n_layers; ++pass) {
    bool fixed = true;
    for (int l = 0; l + 1 < n_layers; ++l)
      if (b[static_cast<size_t>(l)] < b[static_cast<size_t>(l) + 1]) {
        std::swap(b[static_cast<size_t>(l)], b[static_cast<size_t>(l) + 1]);
        fixed = false;
      }
    if (fixed) break;
  }
  return b;
}

std::vector<int> adakv_split(std::span<const std::vector<float>> head_scores, int mean, double alpha) {
  const size_t H = head_scores.size();
  std::vector<int> caps(H);
  long all = 0;
  for (size_t h = 0; h < H; ++h) {
    caps[h] = static_cast<int>(head_scores[h].size());
    all += caps[h];
  }
  const long total = std::min(all, static_cast<long>(H) * mean);
  // Global top-`total` over the concatenated scores; a head's count is how many of its entries win.
  std::vector<float> flat;
  std::vector<int> owner;
  flat.reserve(static_cast<size_t>(all));
  for (size_t h = 0; h < H; ++h) {
    flat.insert(flat.end(), head_scores[h].begin(), head_scores[h].end());
    owner.insert(owner.end(), head_scores[h].size(), static_cast<int>(h));
  }
  std::vector<int> winners = top_k_indices(flat, static_cast<int>(total));
  std::vector<double> count(H, 0.0);
  for (int i : winners) count[static_cast<size_t>(owner[static_cast<size_t>(i)])] += 1.0;
  const int floor_tokens = static_cast<int>(alpha * mean);
  std::vector<double> blend(H);
  std::vector<int> out(H);
  long given = 0;
  for (size_t h = 0; h < H; ++h) {
    blend[h] = count[h] * (1.0 - alpha) + floor_tokens;
    out[h] = std::min(caps[h], static_cast<int>(std::floor(blend[h])));
    given += out[h];
  }
  // Exact total: hand out what rounding left by largest fractional part, then by winner count.
  std::vector<size_t> order(H);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const double fa = blend[a] - std::floor(blend[a]), fb = blend[b] - std::floor(blend[b]);
    return fa != fb ? fa > fb : count[a] > count[b];
  });
  while (given < total) {
    bool progress = false;
    for (size_t h : order)
      if (given < total && out[h] < caps[h]) {
        ++out[h];
        ++given;
        progress = true;
      }
    if (!progress) break;
  }
  while (given > total) {  // only when floors exceed the total (alpha close to 1 with tiny budgets)
    bool progress = false;
    for (auto it = order.rbegin(); it != order.rend() && given > total; ++it)
      if (out[*it] > floor_tokens) {
        --out[*it];
        --given;
        progress = true;
      }
    if (!progress) break;
  }
  return out;
}

}  // namespace kvwise
