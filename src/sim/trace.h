// Serving traces: requests with arrival time, lengths and prompt block keys, read from the
// Mooncake JSONL, Qwen-Bailian JSONL and Azure CSV formats, or generated.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "prefix/block_table.h"

namespace kvwise::sim {

struct TraceRequest {
  double time = 0;  // seconds from the start of the trace
  uint32_t input_tokens = 0;
  uint32_t output_tokens = 0;
  std::vector<prefix::BlockKey> blocks;
  int64_t chat_id = -1, parent_chat_id = -1;  // Bailian schema only
  std::string type;                           // Bailian schema only
  int turn = 0;                               // Bailian schema only
  uint16_t category = 0;                      // set by assign_categories
};

struct Trace {
  std::string source;
  std::string format;
  int block_tokens = 512;
  std::vector<TraceRequest> requests;
  std::vector<std::string> category_names;
  size_t skipped_lines = 0;
  // Tokens of block j of request r (the last block may be partial).
  uint32_t block_token_count(const TraceRequest& r, size_t j) const;
};

enum class OnBadLine { Skip, Fail };

// format: mooncake | bailian | azure. A malformed line is reported with its line number on stderr
// (the first few) and skipped, or raises kvwise::Error when on_bad == Fail.
Trace read_trace(const std::string& path, const std::string& format, OnBadLine on_bad = OnBadLine::Skip,
                 int azure_block_tokens = 512, uint64_t seed = 1);
// Guesses the format from the file name and first line.
std::string detect_format(const std::string& path);
// Writes the Bailian JSONL schema (used for generated traces).
void write_bailian(const Trace& trace, const std::string& path);

}  // namespace kvwise::sim
