#include "serve/prompt_tokens.h"

namespace kvwise {

std::vector<int32_t> prompt_tokens(const Tokenizer& tok, ChatFormat format, RequestFields& f, bool chat) {
  if (chat) return tok.encode(render_chat(format, f.messages), true);
  if (f.prompt_text) return tok.encode(*f.prompt_text, true);
  return std::move(f.prompt_ids);
}

}  // namespace kvwise
