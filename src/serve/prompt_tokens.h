// The prompt tokens of a checked request, exactly as kvwise serve computes them (chat messages
// rendered in the model's chat format, text with BOS, ids as given), so that a router hashes the
// same prefix blocks as the servers behind it. Thread-safe (the tokenizer is read-only).
#pragma once
#include <cstdint>
#include <vector>

#include "model/tokenizer.h"
#include "serve/chat_template.h"
#include "serve/request_fields.h"

namespace kvwise {

std::vector<int32_t> prompt_tokens(const Tokenizer& tok, ChatFormat format, RequestFields& fields, bool chat);

}  // namespace kvwise
