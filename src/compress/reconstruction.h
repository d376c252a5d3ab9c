// KVzip's context reconstruction (Kim et al., arXiv:2505.23416): after the prompt, the model is made
// to repeat its context ("<prompt> <context>") in an unstored pass, and each context token's score is
// the largest attention any repeating query pays it. The pass runs in chunks of the context so that
// its positions fit the model's context; every chunk's queries attend to the whole stored context
// (KVzip's own chunking restricts a chunk's keys to the chunk and the sinks), and the softmax is
// taken over the stored context only, not over the pass's own tokens [approximation, see
// docs/compression.md]. Not thread-safe: one per sequence, driven by its compressor.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "kv/kv_store.h"
#include "model/forward.h"

namespace kvwise {

struct ReconstructionConfig {
  int chunk = 128;            // context tokens per pass
  std::string prompt = "\n";  // what precedes the repeated context
};

class ReconstructionPass {
 public:
  ReconstructionPass(ReconstructionConfig cfg, const KvLayout& layout, int32_t prompt_begin, int32_t prompt_end,
                     int ctx);
  // The tokenized prompt; throws when the context leaves no room for a pass of at least one token.
  void set_prompt(std::vector<int32_t> tokens);
  // Prompt tokens as the forward pass sees them (those outside [prompt_begin, prompt_end) are ignored).
  void add_context(std::span<const int32_t> tokens, int32_t first_pos);
  void start();
  bool started() const { return started_; }
  bool running() const { return running_; }
  // The next pass's tokens (prompt + a chunk of the context), or {} once every chunk has run.
  std::vector<int32_t> next();
  // Folds one layer's attention of the running pass into the scores (uses the engine's threads).
  void accumulate(const KvStore& kv, SeqId seq, const SequenceObserver::Attention& a);
  // Per slot of the KV head of query head q_head: the largest attention of a repeating query.
  std::span<const float> scores(int layer, int q_head) const;
  double seconds() const { return seconds_; }

 private:
  ReconstructionConfig cfg_;
  KvLayout layout_;
  int32_t begin_, end_;
  int ctx_;
  std::vector<int32_t> prompt_, context_;
  size_t next_chunk_ = 0;
  bool started_ = false, running_ = false;
  std::vector<std::vector<float>> scores_;  // [layer * n_heads + q_head][slot]
  double seconds_ = 0;
};

}  // namespace kvwise
