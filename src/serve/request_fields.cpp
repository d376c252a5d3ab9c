#include "serve/request_fields.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <type_traits>

namespace kvwise {

namespace {

using json = nlohmann::json;

[[noreturn]] void bad(const std::string& message) {
  throw HttpError{400, message, "invalid_request_error"};
}

[[noreturn]] void bad_field(const char* key, const std::string& what) {
  bad(fmt::format("'{}' {}", key, what));
}

// An integer that fits [lo, hi] exactly: no bools, no fractions, no silent narrowing.
int64_t exact_integer(const json& v, const char* key, int64_t lo, int64_t hi) {
  if (!v.is_number_integer()) bad_field(key, "has the wrong type: it must be an integer");
  const bool big = v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX);
  const int64_t x = big ? INT64_MAX : v.get<int64_t>();
  if (big || x < lo || x > hi) bad_field(key, fmt::format("must be in [{}, {}]", lo, hi));
  return x;
}

// A field of the body, type-checked: integers by exact_integer within their type's range, numbers
// finite, booleans only true/false, strings only strings.
template <typename T>
T field(const json& body, const char* key, T def) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return def;
  const json& v = *it;
  if constexpr (std::is_same_v<T, bool>) {
    if (!v.is_boolean()) bad_field(key, "has the wrong type: it must be true or false");
    return v.get<bool>();
  } else if constexpr (std::is_integral_v<T>) {
    return static_cast<T>(exact_integer(v, key, std::numeric_limits<T>::min(), std::numeric_limits<T>::max()));
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!v.is_number()) bad_field(key, "has the wrong type: it must be a number");
    const double x = v.get<double>();
    if (!std::isfinite(x) || std::abs(x) > 1e30) bad_field(key, "must be a finite number");
    return static_cast<T>(x);
  } else {
    if (!v.is_string()) bad_field(key, "has the wrong type: it must be a string");
    return v.get<std::string>();
  }
}

void parse_sampling(const json& body, const RequestLimits& limits, uint64_t default_seed, RequestFields& r) {
  r.max_tokens = field<int>(body, "max_tokens", field<int>(body, "max_completion_tokens", 16));
  if (r.max_tokens < 0 || (r.max_tokens == 0 && !(r.echo && r.logprobs >= 0)))
    bad("max_tokens must be at least 1 (0 only with echo and logprobs, to score the prompt)");
  if (r.max_tokens > limits.ctx)
    bad(fmt::format("max_tokens ({}) exceeds the context of {} tokens", r.max_tokens, limits.ctx));
  r.ignore_eos = field<bool>(body, "ignore_eos", false);
  r.sampling.temperature = field<float>(body, "temperature", 1.0f);
  r.sampling.top_p = field<float>(body, "top_p", 1.0f);
  r.sampling.top_k = field<int>(body, "top_k", 0);
  r.sampling.seed = static_cast<uint64_t>(field<int64_t>(body, "seed", static_cast<int64_t>(default_seed)));
  if (r.sampling.temperature < 0 || r.sampling.temperature > 2) bad("temperature must be in [0, 2]");
  if (r.sampling.top_p <= 0 || r.sampling.top_p > 1) bad("top_p must be in (0, 1]");
  if (r.sampling.top_k < 0) bad("top_k must not be negative");
  if (r.sampling.top_k > limits.n_vocab)
    bad(fmt::format("top_k must be at most the vocabulary size ({})", limits.n_vocab));
  if (field<int>(body, "n", 1) != 1) bad("only n = 1 is supported");
  if (body.contains("stop") && !body["stop"].is_null()) {
    const json& stop = body["stop"];
    if (stop.is_string()) {
      r.stop.push_back(stop.get<std::string>());
    } else if (stop.is_array() && stop.size() <= 4 &&
               std::all_of(stop.begin(), stop.end(), [](const json& x) { return x.is_string(); })) {
      for (const json& x : stop) r.stop.push_back(x.get<std::string>());
    } else {
      bad("'stop' must be a string or a list of up to 4 strings");
    }
  }
  r.stream = field<bool>(body, "stream", false);
  if (body.contains("stream_options") && body["stream_options"].is_object())
    r.include_usage = field<bool>(body["stream_options"], "include_usage", false);
}

// logprobs / echo / return_tokens (completions) and logprobs / top_logprobs (chat).
void parse_logprobs(const json& body, bool chat, RequestFields& r) {
  const auto lp = body.find("logprobs");
  if (chat) {
    const bool on = field<bool>(body, "logprobs", false);
    const int top = field<int>(body, "top_logprobs", -1);
    if (top != -1 && (top < 0 || top > 20)) bad("top_logprobs must be in [0, 20]");
    if (top >= 0 && !on) bad("top_logprobs needs logprobs: true");
    if (on) r.logprobs = std::max(0, top);
    if (field<bool>(body, "echo", false) || field<bool>(body, "return_tokens", false))
      bad("'echo' and 'return_tokens' are /v1/completions fields");
  } else if (body.contains("top_logprobs") && !body["top_logprobs"].is_null()) {
    bad("'top_logprobs' is a /v1/chat/completions field (on /v1/completions, logprobs is the count)");
  } else if (lp != body.end() && !lp->is_null()) {
    if (lp->is_boolean()) {
      if (lp->get<bool>()) bad("'logprobs' on /v1/completions is an integer (0 to 20): the alternatives per token");
    } else {
      r.logprobs = static_cast<int>(exact_integer(*lp, "logprobs", 0, 20));
    }
  }
  if (!chat) {
    r.echo = field<bool>(body, "echo", false);
    r.return_tokens = field<bool>(body, "return_tokens", false);
  }
  if ((r.logprobs >= 0 || r.echo) && field<bool>(body, "stream", false))
    bad("logprobs and echo are not supported with stream (ask without streaming)");
}

void parse_extensions(const json& body, RequestFields& r) {
  r.kv_policy = field<std::string>(body, "kv_policy", "");
  if (body.contains("kv_budget") && body["kv_budget"].is_number())
    r.kv_budget = body["kv_budget"].dump();
  else
    r.kv_budget = field<std::string>(body, "kv_budget", "");
  if (r.kv_budget.size() > 32) bad("kv_budget is too long");
  r.kv_category = field<std::string>(body, "kv_category", "");
  r.cache_salt = field<std::string>(body, "cache_salt", "");
  if (r.kv_category.size() > 64) bad("kv_category is longer than 64 bytes");
}

void parse_prompt(const json& body, const RequestLimits& limits, RequestFields& r) {
  auto it = body.find("prompt");
  if (it == body.end()) bad("'prompt' is required");
  if (it->is_string()) {
    r.prompt_text = it->get<std::string>();
  } else if (it->is_array() && it->size() == 1 && (*it)[0].is_string()) {
    r.prompt_text = (*it)[0].get<std::string>();
  } else if (it->is_array() && !it->empty() && (*it)[0].is_number()) {
    r.prompt_ids.reserve(it->size());
    for (const json& x : *it) {
      const int64_t id = exact_integer(x, "prompt", INT64_MIN, INT64_MAX);
      if (id < 0 || id >= limits.n_vocab)
        bad(fmt::format("token id {} is outside the vocabulary (0 to {})", id, limits.n_vocab - 1));
      r.prompt_ids.push_back(static_cast<int32_t>(id));
    }
  } else {
    bad("'prompt' must be a string, a list of one string, or a list of token ids");
  }
}

void parse_messages(const json& body, RequestFields& r) {
  auto it = body.find("messages");
  if (it == body.end() || !it->is_array() || it->empty()) bad("'messages' must be a non-empty list");
  for (const json& m : *it) {
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string() || !m.contains("content"))
      bad("each message needs a string 'role' and a 'content'");
    std::string content;
    if (m["content"].is_string()) {
      content = m["content"].get<std::string>();
    } else if (m["content"].is_array()) {  // [{"type": "text", "text": ...}]
      for (const json& part : m["content"])
        if (part.is_object() && part.contains("type") && part["type"] == "text" && part.contains("text") &&
            part["text"].is_string())
          content += part["text"].get<std::string>();
        else
          bad("only text content parts are supported");
    } else {
      bad("message content must be a string or a list of text parts");
    }
    r.messages.push_back({m["role"].get<std::string>(), content});
  }
}

// No field is ignored silently: a field kvwise does not implement is a 400 that names it, unless it
// carries the value that means "off" (what OpenAI clients send by default); metadata like `user` is
// accepted and has no effect.
void check_fields(const json& body, bool chat) {
  static const char* const implemented[] = {"model",        "max_tokens",  "max_completion_tokens",
                                            "ignore_eos",   "temperature", "top_p",
                                            "top_k",        "seed",        "n",
                                            "stop",         "stream",      "stream_options",
                                            "kv_policy",    "kv_budget",   "kv_category",
                                            "cache_salt",   "user",        "logprobs",
                                            "top_logprobs", "echo",        "return_tokens"};
  // Fields with the value that changes nothing (null is always that).
  const auto neutral = [](const std::string& key, const json& v) {
    if (v.is_null()) return true;
    if (key == "frequency_penalty" || key == "presence_penalty") return v.is_number() && v.get<double>() == 0.0;
    if (key == "repeat_penalty") return v.is_number() && v.get<double>() == 1.0;
    if (key == "best_of") return v.is_number_integer() && v.get<int64_t>() == 1;
    if (key == "logit_bias") return v.is_object() && v.empty();
    if (key == "suffix") return v.is_string() && v.get<std::string>().empty();
    if (key == "parallel_tool_calls" || key == "store") return v.is_boolean();
    return false;
  };
  for (const auto& item : body.items()) {  // (no structured binding: a lambda below uses the key)
    const std::string& key = item.key();
    const json& value = item.value();
    if (key == (chat ? "messages" : "prompt")) continue;
    if (std::find_if(std::begin(implemented), std::end(implemented), [&](const char* k) { return key == k; }) !=
        std::end(implemented))
      continue;
    if (neutral(key, value)) continue;
    const std::string shown = key.size() > 64 ? key.substr(0, 64) + "..." : key;
    bad(
        fmt::format("'{}' is not supported by kvwise{}; supported fields: {}, max_tokens, temperature, top_p, top_k, "
                    "seed, n (1), stop, stream, stream_options, logprobs, top_logprobs (chat), echo and return_tokens "
                    "(completions), kv_policy, kv_budget, kv_category, cache_salt, user",
                    shown,
                    key == (chat ? "prompt" : "messages")
                        ? (chat ? " on /v1/chat/completions (use messages)" : " on /v1/completions (use prompt)")
                        : "",
                    chat ? "messages" : "prompt"));
  }
  if (body.contains("stream_options") && !body["stream_options"].is_null() && !body["stream_options"].is_object())
    bad("'stream_options' must be an object");
  if (body.contains("stream_options") && body["stream_options"].is_object())
    for (const auto& [key, value] : body["stream_options"].items())
      if (key != "include_usage")
        bad(fmt::format("'stream_options.{}' is not supported (only include_usage)", key.substr(0, 64)));
}

}  // namespace

RequestFields parse_request_fields(std::string_view text, bool chat, const RequestLimits& limits,
                                   uint64_t default_seed) {
  json body;
  try {
    body = json::parse(text);
  } catch (const json::exception& e) {
    bad(std::string("malformed JSON: ") + e.what());
  }
  if (!body.is_object()) bad("the body must be a JSON object");
  check_fields(body, chat);
  RequestFields r;
  parse_logprobs(body, chat, r);
  parse_sampling(body, limits, default_seed, r);
  parse_extensions(body, r);
  if (chat)
    parse_messages(body, r);
  else
    parse_prompt(body, limits, r);
  return r;
}

}  // namespace kvwise
