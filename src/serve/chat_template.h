// Chat messages to a prompt. kvwise does not run Jinja: it recognises the common families from the
// GGUF's tokenizer.chat_template (ChatML as used by Qwen2 and SmolLM, Llama 3 headers, Llama 2 / Mistral
// [INST]) and renders them itself; a model without a template (or an unrecognised one) gets the
// documented plain format: "<role>: <content>\n" per message, then "assistant:".
#pragma once
#include <string>
#include <vector>

namespace kvwise {

struct ChatMessage {
  std::string role;  // system | user | assistant
  std::string content;
};

enum class ChatFormat { Plain, ChatML, Llama3, Llama2 };

ChatFormat detect_chat_format(const std::string& gguf_template);
const char* chat_format_name(ChatFormat f);
// The prompt text, ending where the assistant's reply starts. The BOS token is not included.
std::string render_chat(ChatFormat f, const std::vector<ChatMessage>& messages);

}  // namespace kvwise
