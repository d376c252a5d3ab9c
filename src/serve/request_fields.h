// The body of a completion or chat request, checked field by field before anything acts on it: types
// exactly (no boolean taken as 1, no fraction as an integer), integers within range (nothing
// narrowed), strings valid UTF-8 (the JSON parser's), sizes bounded, and no field ignored: one that
// kvwise does not implement is a 400 unless it holds its "off" value (frequency_penalty 0, logprobs
// false, ...). Pure: no model, no files, so a
// fuzzer can drive it. Thread-safe.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/sampler.h"
#include "serve/chat_template.h"

namespace kvwise {

// An error the client caused (or 503 for a full queue): an HTTP status and an OpenAI-style type.
struct HttpError {
  int status;
  std::string message;
  std::string type;
};

struct RequestLimits {
  int64_t n_vocab = 0;
  int ctx = 0;
};

struct RequestFields {
  // The prompt: text (completions), token ids (completions) or messages (chat).
  std::optional<std::string> prompt_text;
  std::vector<int32_t> prompt_ids;
  std::vector<ChatMessage> messages;
  int max_tokens = 16;
  bool ignore_eos = false;
  // Completions: logprobs N (0-20: each token's logprob and its N likeliest alternatives), echo (the
  // prompt comes back first, with its tokens' logprobs when logprobs is set; max_tokens 0 then scores
  // the prompt alone, lm-eval-harness's loglikelihood requests), return_tokens (llama.cpp: token ids).
  // Chat: logprobs true with top_logprobs N. -1: off.
  int logprobs = -1;
  bool echo = false;
  bool return_tokens = false;
  SamplerParams sampling;
  std::vector<std::string> stop;
  bool stream = false, include_usage = false;
  // kvwise extensions: the policy spec and budget as text (parsed by the registry, untrusted).
  std::string kv_policy, kv_budget, kv_category, cache_salt;
};

// Throws HttpError (400) naming the field at fault.
RequestFields parse_request_fields(std::string_view body, bool chat, const RequestLimits& limits,
                                   uint64_t default_seed);

}  // namespace kvwise
