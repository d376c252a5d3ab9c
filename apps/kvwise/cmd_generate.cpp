#include <cstdio>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "common.h"
#include "model/generate.h"

namespace kvwise::cli {

void add_generate(CLI::App& app) {
  struct Opts {
    ModelOptions m;
    PolicyOptions pol;
    std::string prompt, prompt_file;
    int n = 64;
    SamplerParams s;
    bool json = false;
    std::vector<int32_t> prompt_tokens;
    int top_logprobs = 0;
    bool ignore_eos = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand("generate", "generate text from a prompt");
  add_model_options(*cmd, o->m);
  add_policy_options(*cmd, o->pol);
  auto* text = cmd->add_option("-p,--prompt", o->prompt, "prompt text (default: empty, i.e. just BOS)");
  auto* file =
      cmd->add_option("-f,--file", o->prompt_file, "read the prompt from this file (llama.cpp's -f)")->excludes(text);
  cmd->add_option("--prompt-tokens", o->prompt_tokens, "the prompt as token ids (comma separated; nothing is added)")
      ->delimiter(',')
      ->excludes(text)
      ->excludes(file);
  cmd->add_option("--top-logprobs", o->top_logprobs,
                  "with --json: the K most likely tokens and their log-probabilities at each generated token")
      ->check(CLI::Range(0, 100));
  cmd->add_flag("--ignore-eos", o->ignore_eos, "keep generating past end-of-generation tokens");
  cmd->add_option("-n,--n-predict", o->n, "tokens to generate")->check(CLI::Range(0, 1 << 24));
  cmd->add_option("--temp,--temperature", o->s.temperature, "temperature (0 = greedy)")->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--top-k", o->s.top_k, "top-k (0 = off)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-p", o->s.top_p, "top-p (1 = off)")->check(CLI::Range(0.000001, 1.0));
  cmd->add_option("--seed", o->s.seed, "sampling seed");
  cmd->add_flag("--json", o->json, "print one JSON object: text, token ids, timings, KV bytes");
  cmd->callback([o] {
    if (!o->prompt_file.empty()) o->prompt = read_text_file(o->prompt_file);
    const auto policy = resolve_policy(o->pol);
    auto model = Model::load(resolve_model_path(o->m));
    Engine engine(*model, engine_options(o->m));
    const Tokenizer& tok = model->tokenizer();
    const std::vector<int32_t> prompt = o->prompt_tokens.empty() ? tok.encode(o->prompt, true) : o->prompt_tokens;
    for (int32_t t : prompt)
      KV_CHECK(t >= 0 && t < model->config().n_vocab, "--prompt-tokens: token id {} is outside the vocabulary of {}", t,
               model->config().n_vocab);
    KV_CHECK(static_cast<int>(prompt.size()) <= engine.ctx(), "the prompt has {} tokens, more than the context of {}",
             prompt.size(), engine.ctx());
    // The last position of the context ends generation: say so now rather than stop short silently.
    const int room = engine.ctx() - static_cast<int>(prompt.size()) + 1;
    if (o->n > room)
      std::fprintf(stderr,
                   "kvwise: warning: -n %d is more than the context leaves (%d tokens, %zu of them the prompt): "
                   "generation stops after %d tokens (raise -c up to the model's context)\n",
                   o->n, engine.ctx(), prompt.size(), room);
    Sampler sampler(o->s);
    if (!o->json) {
      std::fputs(o->prompt.c_str(), stdout);
      std::fflush(stdout);
    }
    std::shared_ptr<KvCompressor> comp;
    nlohmann::json top = nlohmann::json::array();
    GenerateHooks hooks;
    hooks.on_text = [&](const std::string& piece) {
      if (o->json) return;
      std::fputs(piece.c_str(), stdout);
      std::fflush(stdout);
    };
    hooks.on_sequence = [&](SeqId seq) { comp = attach_policy(engine, seq, policy, static_cast<int>(prompt.size())); };
    if (o->top_logprobs > 0)
      hooks.on_logits = [&](const float* logits, int n_vocab) {
        nlohmann::json step = nlohmann::json::array();
        for (const auto& [id, lp] : top_log_probs(logits, n_vocab, o->top_logprobs))
          step.push_back({{"id", id}, {"logprob", lp}});
        top.push_back(std::move(step));
      };
    hooks.ignore_eos = o->ignore_eos;
    GenerateResult r = generate(engine, prompt, o->n, sampler, hooks);
    const double pp = r.prefill_seconds > 0 ? static_cast<double>(prompt.size()) / r.prefill_seconds : 0;
    const double tg = r.decode_seconds > 0 ? static_cast<double>(r.tokens.size()) / r.decode_seconds : 0;
    if (o->json) {
      nlohmann::json j;
      j["model"] = model->file().path();
      j["prompt"] = o->prompt;
      j["text"] = r.text;
      j["prompt_tokens"] = r.prompt_tokens;
      j["tokens"] = r.tokens;
      j["prompt_token_ids"] = prompt;
      if (o->top_logprobs > 0) j["top_logprobs"] = top;
      j["stopped_at_eos"] = r.stopped_at_eos;
      j["stopped_at_context"] = !r.stopped_at_eos && static_cast<int>(r.tokens.size()) < o->n;
      j["timings"] = {{"prefill_seconds", r.prefill_seconds},
                      {"decode_seconds", r.decode_seconds},
                      {"prefill_tokens_per_second", pp},
                      {"decode_tokens_per_second", tg}};
      j["kv"] = {{"type", kv_type_of(o->m)},
                 {"bytes_final", r.kv_bytes},
                 {"bytes_peak", r.kv_bytes_peak},
                 {"bytes_after_prefill", r.kv_bytes_prefill},
                 {"bytes_per_token_full", engine.kv().bytes_per_token_full()}};
      j["threads"] = engine.options().threads;
      j["kv_policy"] = policy->spec;
      j["kv_budget"] = policy->budget.to_string();
      if (comp) j["compression"] = to_json(comp->report());
      std::puts(j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    } else {
      std::fputs("\n", stdout);
      std::fprintf(stderr, "\nprompt %zu tokens %.1f tok/s | generated %zu tokens %.1f tok/s | KV %s (peak %s, %s)\n",
                   prompt.size(), pp, r.tokens.size(), tg, human_bytes(static_cast<double>(r.kv_bytes)).c_str(),
                   human_bytes(static_cast<double>(r.kv_bytes_peak)).c_str(), kv_type_of(o->m).c_str());
      if (comp) std::fprintf(stderr, "%s\n", describe(comp->report(), engine.kv().bytes_per_token_full()).c_str());
    }
  });
}

}  // namespace kvwise::cli
