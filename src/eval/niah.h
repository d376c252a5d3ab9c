// Needle-in-a-haystack and passkey retrieval (kv-algorithms §15.1): a fact is hidden at a relative
// depth of a long filler text, the question comes last, and greedy decoding must reproduce the
// number. Works with any GGUF model; small models are expected to fail, and the harness reports it.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "compress/pipeline.h"
#include "model/forward.h"

namespace kvwise {

// The .txt files of a directory, in name order, concatenated (each followed by a blank line).
std::string read_haystack(const std::string& dir);
// The synthetic filler sentence of the passkey task (and of the bundled model's training).
extern const char* const kPasskeyFiller;

struct NiahOptions {
  std::string task = "needle";  // needle (Paul Graham essays) | passkey (synthetic filler)
  std::string haystack_dir;     // directory of .txt files (needle task)
  int answer_tokens = 12;
  uint64_t seed = 1;
  // Text appended after the question, e.g. " ": on tokenizers that split the space before digits into
  // a piece of its own, the prompt then ends where the digits start, so a selection made from the
  // prompt's last queries (SnapKV and its kin) sees the query that reads the answer.
  std::string answer_prefix;
};

struct NiahCase {
  int length = 0;    // prompt tokens (BOS included)
  double depth = 0;  // 0 = start of the filler, 1 = end
  std::vector<int32_t> prompt;
  int context = 0;     // prompt tokens before the question
  std::string answer;  // the digits to find
};

class NiahBuilder {
 public:
  NiahBuilder(const Tokenizer& tok, const NiahOptions& o);
  NiahCase build(int length, double depth, int index) const;

 private:
  const Tokenizer& tok_;
  NiahOptions o_;
  std::vector<int32_t> filler_;
};

struct NiahOutcome {
  bool correct = false;
  std::string output;
  size_t hot_bytes = 0;  // after prefill (and compression)
  double prefill_seconds = 0, decode_seconds = 0;
  int decode_steps = 0;  // engine.decode calls timed by decode_seconds
};

// preload (optional): puts the KV of the prompt's first n tokens into the new sequence (as a prefix
// cache hit does) and returns n; the rest of the prompt is prefilled after them.
// query_agnostic: the policy compresses the context alone and the question is prefilled afterwards
// into the compressed cache (kvpress's default protocol, the setting of a cached, reused prefix);
// otherwise the policy compresses the whole prompt, question included (query-aware).
NiahOutcome run_niah_case(Engine& engine, const NiahCase& c, std::shared_ptr<const KvPolicy> policy, int answer_tokens,
                          const std::function<int(SeqId)>& preload = {}, bool query_agnostic = false);

}  // namespace kvwise
