// A seeded generator of Bailian-schema workloads: request types with their own shared system
// prompts (Zipf-popular: head-heavy spatial reuse), multi-turn conversation chains whose follow-ups
// arrive after exponential, per-category (type x turn) delays, and unique user text. The default
// workload of `kvwise sim`, and the test bed for category-aware policies.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "sim/trace.h"

namespace kvwise::sim {

struct SyntheticType {
  std::string name;
  double weight;         // share of new conversations
  double multi_turn;     // probability that a turn gets a follow-up
  double mean_gap;       // mean seconds between turns (exponential); grows 50 % per turn
  int system_prompts;    // distinct shared system prompts of this type
  int system_blocks;     // blocks per system prompt
  int user_blocks_mean;  // mean unique blocks a turn adds
};

struct SyntheticOptions {
  int requests = 4000;
  double rate = 4.0;  // new conversations per second (Poisson)
  int block_tokens = 16;
  int max_turns = 6;
  int output_tokens_mean = 200;
  uint64_t seed = 1;
  std::vector<SyntheticType> types = {
      {"text", 0.78, 0.47, 20.0, 8, 24, 24},
      {"file", 0.04, 0.51, 60.0, 4, 16, 200},
      {"image", 0.03, 0.10, 10.0, 4, 16, 60},
      {"search", 0.15, 0.49, 5.0, 2, 48, 16},
  };
};

Trace generate_synthetic(const SyntheticOptions& options);

}  // namespace kvwise::sim
