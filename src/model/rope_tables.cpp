#include "model/rope_tables.h"

#include <algorithm>
#include <cmath>

namespace kvwise {

namespace {

// The dimension (pair index) where YaRN's ramp crosses a rotation count (ggml_rope_yarn_corr_dim).
double yarn_corr_dim(int n_rot, int orig_ctx, double rotations, double base) {
  return n_rot * std::log(orig_ctx / (rotations * 2 * M_PI)) / (2 * std::log(base));
}

}  // namespace

std::vector<float> llama3_rope_factors(int n_rot, double base, double factor, double low_freq, double high_freq,
                                       int orig_ctx) {
  std::vector<float> f(static_cast<size_t>(n_rot / 2), 1.0f);
  const double low_wavelen = orig_ctx / low_freq, high_wavelen = orig_ctx / high_freq;
  for (int i = 0; i < n_rot / 2; ++i) {
    const double wavelen = 2 * M_PI / std::pow(base, -2.0 * i / n_rot);
    if (wavelen > low_wavelen) {
      f[static_cast<size_t>(i)] = static_cast<float>(factor);
    } else if (wavelen >= high_wavelen) {
      const double smooth = (orig_ctx / wavelen - low_freq) / (high_freq - low_freq);
      f[static_cast<size_t>(i)] = static_cast<float>(1.0 / ((1 - smooth) / factor + smooth));
    }
  }
  return f;
}

std::vector<LayerRope> rope_tables(const ModelConfig& c, const ModelWeights& w, int ctx) {
  const int half = c.n_rot / 2;
  std::vector<float> factors;  // per-dimension divisors of the frequency
  if (w.rope_freqs) {
    factors.assign(w.rope_freqs, w.rope_freqs + half);
  } else if (w.rope_factors_long || w.rope_factors_short) {
    const float* f = ctx > c.rope_orig_ctx && w.rope_factors_long ? w.rope_factors_long
                     : w.rope_factors_short                       ? w.rope_factors_short
                                                                  : w.rope_factors_long;
    factors.assign(f, f + half);
  } else if (c.rope_scaling == RopeScaling::Llama3) {
    // A file that names the scaling without carrying the rope_freqs tensor.
    factors = llama3_rope_factors(c.n_rot, c.rope_freq_base, c.rope_scaling_factor, c.llama3_low_freq,
                                  c.llama3_high_freq, c.rope_orig_ctx);
  }
  std::vector<LayerRope> out(static_cast<size_t>(c.n_layers));
  for (int l = 0; l < c.n_layers; ++l) {
    const LayerAttention& la = c.layers[static_cast<size_t>(l)];
    LayerRope& r = out[static_cast<size_t>(l)];
    r.mscale = c.rope_attn_factor;
    double low = 0, high = 0;
    const bool yarn = c.rope_scaling == RopeScaling::Yarn;
    float freq_scale = la.rope_freq_scale;
    if (yarn) {
      freq_scale = 1.0f / c.rope_scaling_factor;
      low = std::max(0.0, std::floor(yarn_corr_dim(c.n_rot, c.rope_orig_ctx, c.yarn_beta_fast, la.rope_base)));
      high =
          std::min(c.n_rot - 1.0, std::ceil(yarn_corr_dim(c.n_rot, c.rope_orig_ctx, c.yarn_beta_slow, la.rope_base)));
      r.mscale *= 1.0f + 0.1f * std::log(1.0f / freq_scale);
    }
    for (int i = 0; i < half; ++i) {
      double f = std::pow(static_cast<double>(la.rope_base), -2.0 * i / c.n_rot);
      if (!factors.empty()) f /= factors[static_cast<size_t>(i)];
      double scale = freq_scale;
      if (yarn) {
        const double y = (i - low) / std::max(0.001, high - low);
        const double ramp = 1.0 - std::min(1.0, std::max(0.0, y));  // 1: extrapolate (keep), 0: interpolate
        scale = freq_scale * (1 - ramp) + ramp;
      }
      r.inv_freq.push_back(static_cast<float>(f * scale));
    }
  }
  return out;
}

}  // namespace kvwise
