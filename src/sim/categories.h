// Request categories for the WA policy. Traces with a type and turn (Bailian schema) use type x turn.
// Traces without (Mooncake, Azure) use an inference rule built only from what a server also knows
// when the request arrives — its block keys, its length and the keys it has seen before:
//   none         one category
//   length       prompt length bucket: <2K, 2K-8K, 8K-32K, >=32K tokens
//   turn         "first" if the prompt's second block (the first after a possible shared root) was
//                never seen before, else "follow-up" (a continued conversation re-sends its history)
//   turn-length  turn x length (the default for traces without categories)
//   trace        the trace's own type x turn (turns capped at 3); only for traces that have them
#pragma once
#include <string>

#include "sim/trace.h"

namespace kvwise::sim {

// "auto": trace when the trace has types, else turn-length.
void assign_categories(Trace& trace, const std::string& rule);

}  // namespace kvwise::sim
