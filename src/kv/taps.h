// Attention statistics that KV compression policies read ("statistic taps"). Collected by the
// attention kernel only when enabled, so the full-cache path pays nothing for them.
#pragma once
#include <cstdint>
#include <vector>

namespace kvwise {

struct TapConfig {
  bool enabled = false;
  // Observation window: the last `window` queries of the prompt, i.e. positions
  // [prompt_end - window, prompt_end). Their attention probabilities are summed per slot
  // (window_sum), squared-summed (window_sumsq) and, with keep_window_rows, stored whole.
  int window = 0;
  int32_t prompt_end = 0;
  bool keep_window_rows = false;
  bool window_entropy = false;  // also sum the window rows' entropies (CAKE; costs a log per entry)
  bool last_row = false;        // the probabilities of the most recent query
  bool col_sums = false;        // running sums of probabilities over every query so far (H2O)
  bool q_absmax = false;        // per-channel max |q| over every query so far (MiKV's balancer)
  bool segment_rows = false;    // per KV head: the chunk's probability rows over its first low-precision segment,
                                // summed over the GQA group (SpeCache), in the taps of the group's first query head
};

// Per (layer, query head). Every vector is indexed by the slot of the head's KV list.
struct HeadTaps {
  std::vector<float> window_sum, window_sumsq;
  std::vector<float> window_rows;  // window x window_cols, row r = query position prompt_end - window + r
  int window_cols = 0;
  // Sum over window queries of -p log p over the prefix slots (those before the window), without
  // renormalising: CAKE's spatial dispersion.
  double window_entropy = 0;
  std::vector<float> last_row;
  std::vector<float> col_sums;
  std::vector<float> q_absmax;      // head_dim
  std::vector<float> segment_rows;  // T rows of segment_cols (the last chunk's queries, GQA-summed)
  int segment_cols = 0;
};

}  // namespace kvwise
