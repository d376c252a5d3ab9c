// The RoPE frequencies of every layer, with every scaling a GGUF can ask for folded in: the layer's
// base and linear factor, per-dimension factors (Llama 3's rope_freqs, Phi-3's LongRoPE factors), and
// YaRN's ramp between interpolated and extrapolated frequencies. Each is a position-independent
// per-dimension frequency, so a rotation by p is still p * inv_freq[i] and rotations still compose
// (policies that move keys rely on that). mscale multiplies the rotated dimensions (YaRN's
// 1 + 0.1 ln(factor), Phi-3's attention factor), as ggml's rope does.
#pragma once
#include <vector>

#include "model/config.h"
#include "model/weights.h"

namespace kvwise {

struct LayerRope {
  std::vector<float> inv_freq;  // n_rot / 2 frequencies
  float mscale = 1.0f;
};

// Llama 3's per-dimension RoPE divisors (Meta's reference; the converter writes them into rope_freqs):
// n_rot / 2 factors for a base, scaling factor, low/high frequency factors and original context.
std::vector<float> llama3_rope_factors(int n_rot, double base, double factor, double low_freq, double high_freq,
                                       int orig_ctx);

// ctx: the context the engine runs with (Phi-3 picks its long factors above the original context).
std::vector<LayerRope> rope_tables(const ModelConfig& c, const ModelWeights& w, int ctx);

}  // namespace kvwise
