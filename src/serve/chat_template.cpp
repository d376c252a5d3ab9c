#include "serve/chat_template.h"

#include "base/error.h"

namespace kvwise {

ChatFormat detect_chat_format(const std::string& t) {
  if (t.find("<|im_start|>") != std::string::npos) return ChatFormat::ChatML;
  if (t.find("<|start_header_id|>") != std::string::npos) return ChatFormat::Llama3;
  if (t.find("[INST]") != std::string::npos) return ChatFormat::Llama2;
  return ChatFormat::Plain;
}

const char* chat_format_name(ChatFormat f) {
  switch (f) {
    case ChatFormat::ChatML:
      return "chatml";
    case ChatFormat::Llama3:
      return "llama3";
    case ChatFormat::Llama2:
      return "llama2";
    case ChatFormat::Plain:
      break;
  }
  return "plain";
}

std::string render_chat(ChatFormat f, const std::vector<ChatMessage>& messages) {
  KV_CHECK(!messages.empty(), "messages is empty");
  for (const auto& m : messages)
    KV_CHECK(m.role == "system" || m.role == "user" || m.role == "assistant",
             "message role \"{}\" is not system, user or assistant", m.role);
  std::string out;
  switch (f) {
    case ChatFormat::ChatML:
      for (const auto& m : messages) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
      return out + "<|im_start|>assistant\n";
    case ChatFormat::Llama3:
      for (const auto& m : messages)
        out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + m.content + "<|eot_id|>";
      return out + "<|start_header_id|>assistant<|end_header_id|>\n\n";
    case ChatFormat::Llama2: {
      std::string system;
      for (const auto& m : messages) {
        if (m.role == "system") {
          system += m.content;
        } else if (m.role == "user") {
          out += "[INST] " + (system.empty() ? "" : "<<SYS>>\n" + system + "\n<</SYS>>\n\n") + m.content + " [/INST]";
          system.clear();
        } else {
          out += " " + m.content + " ";
        }
      }
      return out;
    }
    case ChatFormat::Plain:
      break;
  }
  for (const auto& m : messages) out += m.role + ": " + m.content + "\n";
  return out + "assistant:";
}

}  // namespace kvwise
