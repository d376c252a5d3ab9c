#include "kv/rope.h"

#include <cmath>

namespace kvwise {

void apply_rope(float* row, int n_heads, int head_dim, int n_rot, RopeType type, const float* inv_freq, float pos) {
  const int half = n_rot / 2;
  for (int i = 0; i < half; ++i) {
    const float angle = pos * inv_freq[i];
    const float c = std::cos(angle), s = std::sin(angle);
    for (int h = 0; h < n_heads; ++h) {
      float* x = row + h * head_dim;
      const int a = type == RopeType::Normal ? 2 * i : i;
      const int b = type == RopeType::Normal ? 2 * i + 1 : i + half;
      const float x0 = x[a], x1 = x[b];
      x[a] = x0 * c - x1 * s;
      x[b] = x0 * s + x1 * c;
    }
  }
}

}  // namespace kvwise
