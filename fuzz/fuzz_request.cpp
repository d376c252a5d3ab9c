// libFuzzer target: the request body parser of /v1/completions and /v1/chat/completions (what a
// client's JSON reaches before anything acts on it). Any input must parse or throw HttpError with a
// 400; a parsed request must respect the limits it was checked against.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "serve/request_fields.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const kvwise::RequestLimits limits{512, 1024};
  for (bool chat : {false, true}) {
    try {
      const kvwise::RequestFields f = kvwise::parse_request_fields(text, chat, limits, 7);
      if (f.max_tokens < 1 || f.max_tokens > limits.ctx || f.sampling.top_k < 0 || f.sampling.top_k > limits.n_vocab)
        __builtin_trap();
      for (int32_t id : f.prompt_ids)
        if (id < 0 || id >= limits.n_vocab) __builtin_trap();
      if (chat && f.messages.empty()) __builtin_trap();
    } catch (const kvwise::HttpError& e) {
      if (e.status != 400) __builtin_trap();
    }
  }
  return 0;
}
