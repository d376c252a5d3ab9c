// Rotary position embedding, shared by the forward pass and by policies that move kept keys to new
// positions (StreamingLLM's cache-relative positions): rotations compose additively, so rotating a
// key stored at position p by (p' - p) gives exactly the key rotated at p'.
#pragma once

namespace kvwise {

enum class RopeType { Normal, Neox };  // adjacent pairs (2i, 2i+1) vs halves (i, i + n_rot/2)

// Rotates the first n_rot dimensions of each of n_heads heads of a row by pos * inv_freq[i].
void apply_rope(float* row, int n_heads, int head_dim, int n_rot, RopeType type, const float* inv_freq, float pos);

}  // namespace kvwise
