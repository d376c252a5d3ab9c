// KV budgets and the integer arithmetic of splitting them (kv-algorithms §1.8, §5, §6).
//
// A budget is the number of tokens each KV head keeps on average, counting the always-kept tokens
// (observation window, sinks) — the "max capacity prompt" convention of SnapKV / PyramidKV / Ada-KV /
// CAKE. It is given as a ratio of the prompt (0 < r <= 1: capacity = round(r * n)) or as a token count
// (an integer >= 1).
#pragma once
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kvwise {

struct Budget {
  double ratio = 1.0;  // used when tokens == 0
  int tokens = 0;

  static Budget parse(std::string_view text);  // "0.25", "25%" or "256"; throws on <= 0 or garbage
  int capacity(int prompt_tokens) const;       // tokens per KV head for a prompt of n tokens
  std::string to_string() const;
};

// Splits `total` into integers proportional to `weights` with per-item caps, summing to exactly
// min(total, sum(caps)): floor shares, clip to caps, spread the clipped excess over uncapped items,
// then fix the remainder by largest fractional part (CAKE's capped proportional split + largest
// remainder). Zero weights everywhere mean an even split.
std::vector<int> split_proportional(long total, std::span<const double> weights, std::span<const int> caps);

// PyramidKV: per-layer non-window budgets, an arithmetic sequence from the bottom layer down to
// mean/beta at the top whose mean is `mean` (exactly: the sum is n_layers * mean), capped at
// `candidates`. Falls back to uniform when the pyramid cannot be formed (kvpress's rule).
std::vector<int> pyramid_budgets(int n_layers, int mean, int candidates, double beta);

// Ada-KV's head split of one layer: global top (n_heads * mean) over every head's scores, count the
// winners of each head, then blend with the floor: B_h = count_h * (1 - alpha) + floor(alpha * mean).
// The result sums to exactly n_heads * mean (bounded by the candidates) and every head keeps at least
// floor(alpha * mean) (or all its candidates).
std::vector<int> adakv_split(std::span<const std::vector<float>> head_scores, int mean, double alpha);

}  // namespace kvwise
