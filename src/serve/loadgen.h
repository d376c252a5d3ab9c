// A load generator for OpenAI-compatible servers (kvwise serve, llama.cpp's llama-server): it scales
// a serving trace down to what a small machine can serve, synthesizes prompts so that equal trace
// block ids give equal token blocks (the prefix structure survives), replays the arrivals on
// loopback with streaming requests, and measures throughput, TTFT, inter-token latency and the
// cached prompt tokens the server reports.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "sim/replay.h"
#include "sim/trace.h"

namespace kvwise {

struct LoadScale {
  size_t first = 0;    // first trace request replayed
  size_t count = 200;  // trace requests considered (before sampling)
  // Keep one conversation in `sample`: requests whose second block id (the first after a shared
  // root; the first id for one-block prompts) hashes to 0 modulo sample. Divides the rate while
  // keeping each kept conversation's whole prefix structure.
  int sample = 1;
  double time_scale = 1.0;  // replayed arrival = (trace time - first's time) * time_scale
  int block_tokens = 16;    // tokens of one trace block in the synthesized prompts
  double output_scale = 1.0 / 16;
  int max_output = 32, min_output = 1;
  int ctx = 2048;      // prompt + output of every request fits (trailing blocks are dropped)
  int vocab = 0;       // synthesized token ids lie in [token_lo, vocab)
  int token_lo = 100;  // skips the special tokens at the start of common vocabularies
  uint64_t seed = 1;
};

struct LoadRequest {
  double time = 0;  // seconds after the start of the replay
  std::vector<int32_t> prompt;
  int max_tokens = 1;
  std::vector<prefix::BlockKey> blocks;  // the trace's block ids of the full blocks of the prompt
  uint32_t trace_input = 0, trace_output = 0;
};

// Throws kvwise::Error when the options cannot describe a workload (no vocabulary, blocks too big).
std::vector<LoadRequest> scale_trace(const sim::Trace& trace, const LoadScale& scale);
// The scaled workload as a trace of block_tokens-token blocks (for `kvwise sim`, written as Bailian JSONL).
sim::Trace scaled_trace(const std::vector<LoadRequest>& requests, int block_tokens);

struct LoadTarget {
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string api_key;
  std::string model = "default";
  int max_concurrency = 128;  // requests in flight at once; later arrivals wait for a slot
  double timeout = 600;       // seconds per request
};

struct RequestOutcome {
  bool ok = false;
  int status = 0;
  std::string error;
  double sent = 0, ttft = 0, e2e = 0;  // sent: seconds after the start of the replay
  double lateness = 0;                 // sent - scheduled arrival (waiting for a concurrency slot)
  std::vector<double> gaps;            // between streamed chunks after the first
  int prompt_tokens = 0, cached_tokens = 0, completion_tokens = 0;
};

struct LoadReport {
  size_t requests = 0, failed = 0;
  double seconds = 0;  // first send to last response
  long prompt_tokens = 0, cached_tokens = 0, completion_tokens = 0;
  double output_tokens_per_second = 0, requests_per_second = 0;
  sim::LatencyStats ttft, itl, e2e, lateness;
  double cached_token_ratio() const {
    return prompt_tokens > 0 ? static_cast<double>(cached_tokens) / static_cast<double>(prompt_tokens) : 0;
  }
  std::vector<RequestOutcome> outcomes;
};

// Replays the requests against the server in real time. progress(done, total) is called as requests end.
LoadReport run_load(const std::vector<LoadRequest>& requests, const LoadTarget& target,
                    const std::function<void(size_t, size_t)>& progress = {});

}  // namespace kvwise
