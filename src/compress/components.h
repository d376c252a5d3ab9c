// The stage implementations the registry composes into named policies (kv-algorithms §2–9).
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "compress/stages.h"

namespace kvwise {

// --- token scorers (statistics + scores) ---
// SnapKV: mean attention of the last `window` prompt queries. Decode-time: the current query's row.
std::shared_ptr<TokenScorer> make_window_scorer(int window);
// CAKE's indicator: mean + gamma * variance over the window queries. Decode-time: the current row.
std::shared_ptr<TokenScorer> make_cake_scorer(int window, double gamma);
// SAGE-KV: the last prompt query's attention row (a window of one, no pooling).
std::shared_ptr<TokenScorer> make_last_query_scorer();
// H2O: attention accumulated over every query so far, prompt and generated.
std::shared_ptr<TokenScorer> make_cumulative_scorer();
// StreamingLLM: position only (more recent = higher).
std::shared_ptr<TokenScorer> make_position_scorer();
// The baseline that must lose: reproducible uniform random scores.
std::shared_ptr<TokenScorer> make_random_scorer(uint64_t seed);

// --- layer budgets ---
std::shared_ptr<LayerBudgeter> make_uniform_layers();
std::shared_ptr<LayerBudgeter> make_pyramid_layers(double beta);
// CAKE: preference H^(1/tau1) * V^(1/tau2) from window entropy and variance; cascade re-budgets every
// seen layer after each layer's prefill so peak memory stays near the total budget.
std::shared_ptr<LayerBudgeter> make_cake_layers(double tau1, double tau2, bool cascade);
// Static per-layer shares (BaKlaVa's profile: the sum of a layer's head weights).
std::shared_ptr<LayerBudgeter> make_weighted_layers(std::vector<double> layer_weights, std::string name);

// --- head budgets ---
std::shared_ptr<HeadBudgeter> make_uniform_heads();
std::shared_ptr<HeadBudgeter> make_adakv_heads(double alpha);
// Static per-head weights [layer][kv_head] (BaKlaVa).
std::shared_ptr<HeadBudgeter> make_weighted_heads(std::vector<std::vector<double>> weights, std::string name);

// --- dispositions ---
std::shared_ptr<Disposition> make_drop();
struct DemoteOptions {
  QuantFormat low;                  // where the losers go
  std::optional<QuantFormat> high;  // MiKV with int8/int4 important tokens: the kept prefix goes here at prefill
  bool balance = false;             // MiKV's per-channel key balancer (needs the q_absmax taps)
};
// Losers move to a low-precision segment instead of being dropped (MiKV; uniform kv-int8/kv-int4).
std::shared_ptr<Disposition> make_demote(DemoteOptions o);

// --- decode policies ---
std::shared_ptr<DecodePolicy> make_grow();
// Keeps the leading static slots and the most recent (cap - static) slots (StreamingLLM, SAGE-KV).
std::shared_ptr<DecodePolicy> make_fifo();
// Every `every` steps, evicts the lowest-scoring non-protected slots down to the cap (H2O, CAKE, and
// SnapKV-family policies with decode_every).
std::shared_ptr<DecodePolicy> make_evict(int every);

}  // namespace kvwise
