// Constructors of the individual policies (make_policy in eviction_policy.h picks by name).
#pragma once
#include <memory>

#include "prefix/eviction_policy.h"

namespace kvwise::prefix {

std::unique_ptr<EvictionPolicy> make_lru();
std::unique_ptr<EvictionPolicy> make_fifo();
std::unique_ptr<EvictionPolicy> make_lfu();
std::unique_ptr<EvictionPolicy> make_gdsf(bool position_cost);
std::unique_ptr<EvictionPolicy> make_s3fifo(size_t capacity, double small_ratio, int threshold);
std::unique_ptr<EvictionPolicy> make_arc(size_t capacity);
std::unique_ptr<EvictionPolicy> make_belady();
std::unique_ptr<EvictionPolicy> make_lru_oracle();
std::unique_ptr<EvictionPolicy> make_wa(const WaOptions& options);
std::unique_ptr<EvictionPolicy> make_hazard(const HazardOptions& options);

}  // namespace kvwise::prefix
