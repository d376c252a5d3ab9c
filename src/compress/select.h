// Score vector primitives shared by every policy: 1-D pooling along the token axis, GQA reduction
// from query heads to their KV head, top-k selection (kv-algorithms §1.2–1.4).
#pragma once
#include <span>
#include <string>
#include <vector>

namespace kvwise {

enum class Pooling { None, Avg, Max };
enum class GroupReduce { Mean, Max, Sum };

Pooling parse_pooling(const std::string& name);           // none | avg | max
GroupReduce parse_group_reduce(const std::string& name);  // mean | max | sum

// Stride 1, odd kernel, padding kernel/2. Avg divides by the kernel even at the edges (PyTorch's
// count_include_pad); max ignores out-of-range entries.
std::vector<float> pool1d(std::span<const float> x, Pooling kind, int kernel);

// Element-wise reduction of equally long vectors.
std::vector<float> reduce_group(std::span<const std::vector<float>> rows, GroupReduce how);

// Indices of the k largest values, in ascending index order. Ties go to the larger index (the more
// recent token). k <= 0 gives none, k >= size gives all.
std::vector<int> top_k_indices(std::span<const float> x, int k);

}  // namespace kvwise
