// The forward pass of a llama-family model over the paged KV store. A batch holds token runs of
// one or more sequences (prefill chunks and decode steps alike); their matrix products are shared,
// attention runs per sequence over that sequence's KV lists.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <vector>

#include "base/thread_pool.h"
#include "kv/attention.h"
#include "kv/kv_store.h"
#include "model/model.h"
#include "model/rope_tables.h"

namespace kvwise {

struct EngineOptions {
  int threads = 1;
  bool cap_threads_to_cores = true;  // run at most usable_cores() threads (ThreadPool)
  DType kv_type = DType::F16;
  int page_tokens = 32;
  int prefill_chunk = 512;
  int ctx = 0;  // most positions per sequence; 0 = the model's context length
  AttentionPath attention_path = AttentionPath::Auto;
};

struct BatchEntry {
  SeqId seq = 0;
  std::span<const int32_t> tokens;
  bool all_logits = false;  // logits for every token (perplexity) or only the last (generation)
  // The last `speculative` tokens are attended to but never stored: their KV rows leave the store
  // right after each layer's attention, and the sequence's position does not advance for them.
  int speculative = 0;
};

// Watches one sequence's forward pass layer by layer: KV compression policies, profilers. Called on the
// engine's thread between layers; it may change the sequence's KV lists of layers it has seen.
class SequenceObserver {
 public:
  virtual ~SequenceObserver() = default;
  struct Attention {
    int layer = 0;
    const float* q = nullptr;    // T rows of n_heads * head_dim (post-RoPE)
    const float* out = nullptr;  // T rows of the attention output, same layout
    int64_t stride = 0;
    const int32_t* pos = nullptr;  // T positions
    int T = 0;
    int speculative = 0;         // the last rows are speculative (already gone from the store)
    ThreadPool* pool = nullptr;  // the engine's threads, free while the observer runs
  };
  // Before layer `layer` appends and attends the entry's tokens (prefetched rows can be installed here).
  virtual void before_attention(KvStore& /*kv*/, SeqId /*seq*/, int /*layer*/) {}
  // After layer a.layer attended the entry's T new tokens, before the next layer runs.
  virtual void after_attention(KvStore& kv, SeqId seq, const Attention& a) = 0;
  // The residual stream of the entry's tokens entering `layer` (layer == n_layers: after the last one).
  virtual void on_hidden(SeqId /*seq*/, int /*layer*/, const float* /*x*/, int64_t /*dim*/, int /*T*/) {}
  // After the whole forward step, once the sequence's next position has advanced.
  virtual void after_forward(KvStore& /*kv*/, SeqId /*seq*/) {}
  // The entry's tokens, before its first layer runs (first_pos: the position of tokens[0]).
  virtual void on_tokens(SeqId /*seq*/, std::span<const int32_t> /*tokens*/, int32_t /*first_pos*/) {}
  // Tokens to run unstored right after a step (KVzip's context-reconstruction pass): the engine runs
  // each non-empty answer as an entry of its own whose tokens are all speculative (attended to, never
  // kept, the position does not advance), then asks again, until the answer is empty.
  virtual std::vector<int32_t> scoring_pass(KvStore& /*kv*/, SeqId /*seq*/) { return {}; }
  // True when decode steps should carry a speculative next token (SpeCache): Engine::decode then runs
  // (token, guess) pairs, guessing greedily from the second row, and reports each guess.
  virtual bool speculative() const { return false; }
  virtual void on_guess(bool /*hit*/) {}
};

class Engine {
 public:
  Engine(const Model& model, const EngineOptions& options);

  const Model& model() const { return model_; }
  const EngineOptions& options() const { return options_; }
  int ctx() const { return ctx_; }
  KvStore& kv() { return kv_; }
  // RoPE frequencies of each layer, every scaling folded in (for policies that move kept keys).
  const std::vector<LayerRope>& rope() const { return rope_; }
  // The most KV slots a sliding-window layer holds per head (window + a page); 0 for global layers.
  int layer_slot_bound(int layer) const;
  ThreadPool& pool() { return pool_; }

  SeqId new_sequence() { return kv_.create_sequence(); }
  void free_sequence(SeqId seq) {
    observers_.erase(seq);
    guesses_.erase(seq);
    kv_.free_sequence(seq);
  }
  // Adds an observer to a sequence; it lives until the sequence is freed (null detaches them all). A
  // sequence may have several (a prefix-cache capture and a compressor); each sees every event, in
  // order. first = true puts it before the others (the capture must see a layer before a compressor
  // changes it).
  void observe(SeqId seq, std::shared_ptr<SequenceObserver> observer, bool first = false);
  // The sequence's first observer of type T, or null.
  template <typename T>
  T* find_observer(SeqId seq) const {
    auto it = observers_.find(seq);
    if (it == observers_.end()) return nullptr;
    for (const auto& o : it->second)
      if (auto* t = dynamic_cast<T*>(o.get())) return t;
    return nullptr;
  }

  // Appends the tokens of every entry to its sequence and returns the requested logits rows
  // (n_vocab floats each), entry after entry. Throws if a sequence would exceed ctx().
  std::vector<float> forward(std::span<const BatchEntry> batch);
  // A whole prompt, in chunks of options().prefill_chunk; logits of the last token (or of all).
  std::vector<float> prefill(SeqId seq, std::span<const int32_t> tokens, bool all_logits = false);
  // One generated token. With a speculative observer the step also runs the guess of the next token
  // (and the first step first runs the token alone, unstored, to make the first guess).
  std::vector<float> decode(SeqId seq, int32_t token);

 private:
  const Model& model_;
  EngineOptions options_;
  int ctx_;
  ThreadPool pool_;
  KvStore kv_;
  std::vector<LayerRope> rope_;
  std::map<SeqId, std::vector<std::shared_ptr<SequenceObserver>>> observers_;
  const std::vector<std::shared_ptr<SequenceObserver>>* observers(SeqId seq) const;
  struct Guess {
    int32_t next = 0;   // the guess for the token after the next real one
    int32_t used = -1;  // the guess the last step ran (of the token now being decoded)
  };
  std::map<SeqId, Guess> guesses_;
};

}  // namespace kvwise
