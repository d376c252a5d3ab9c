// Model file tools: inspect, tokenize, convert (llama2.c), quantize, make-model.
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/error.h"
#include "base/progress.h"
#include "common.h"
#include "model/arch.h"
#include "model/convert.h"
#include "model/quantize_mix.h"

namespace kvwise::cli {

namespace {

void add_inspect(CLI::App& app) {
  struct Opts {
    std::string model;
    bool json = false;
    bool all_tensors = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand("inspect", "print a GGUF model's metadata, tensors, parameters, KV bytes/token");
  cmd->add_option("model", o->model, "GGUF file")->required();
  cmd->add_flag("--json", o->json, "print JSON");
  cmd->add_flag("--all-tensors", o->all_tensors, "list every tensor (default: the first 24)");
  cmd->callback([o] {
    auto model = Model::load(o->model);
    const GgufFile& f = model->file();
    const ModelConfig& c = model->config();
    const size_t kv16 = c.kv_bytes_per_token(2), kv32 = c.kv_bytes_per_token(4);
    if (o->json) {
      nlohmann::json j;
      j["path"] = f.path();
      j["gguf_version"] = f.version();
      j["architecture"] = c.arch;
      j["parameters"] = model->weights().parameters;
      j["weight_bytes"] = model->weights().mapped_bytes;
      j["config"] = {{"dim", c.dim},
                     {"layers", c.n_layers},
                     {"heads", c.n_heads},
                     {"kv_heads", c.n_kv_heads},
                     {"head_dim", c.head_dim},
                     {"ffn", c.ffn_dim},
                     {"vocab", c.n_vocab},
                     {"ctx", c.ctx_len},
                     {"rope_base", c.rope_freq_base},
                     {"rope", c.rope_type == RopeType::Neox ? "neox" : "normal"},
                     {"tied_output", model->weights().tied_output},
                     {"family", c.family},
                     {"qk_norm", c.qk_norm},
                     {"post_norms", c.post_norms},
                     {"ffn_activation", c.ffn_act == Activation::Silu ? "silu" : "gelu_tanh"},
                     {"embed_scale", c.embed_scale},
                     {"query_scale", c.query_scale()},
                     {"attn_softcap", c.attn_softcap},
                     {"final_softcap", c.final_softcap}};
      for (const LayerAttention& l : c.layers)
        j["config"]["layers_attention"].push_back(
            {{"window", l.window}, {"rope_base", l.rope_base}, {"rope_freq_scale", l.rope_freq_scale}});
      j["kv_bytes_full_context_f16"] = c.kv_bytes_for(c.ctx_len, 2);
      j["kv_bytes_per_token"] = {{"f16", kv16}, {"f32", kv32}};
      j["tokenizer"] = model->tokenizer().kind();
      for (const auto& [k, v] : f.metadata()) j["metadata"][k] = v.to_display(8);
      for (const auto& t : f.tensors())
        j["tensors"].push_back({{"name", t.name}, {"type", dtype_name(t.type)}, {"dims", t.dims}, {"bytes", t.bytes}});
      std::puts(j.dump(2).c_str());
      return;
    }
    std::printf("%s: GGUF v%u, %zu metadata entries, %zu tensors\n\n", f.path().c_str(), f.version(),
                f.metadata().size(), f.tensors().size());
    for (const auto& [k, v] : f.metadata()) std::printf("  %-44s %s\n", k.c_str(), v.to_display(6).c_str());
    std::printf("\n  %-32s %-6s %-20s %s\n", "tensor", "type", "shape", "bytes");
    size_t shown = 0;
    for (const auto& t : f.tensors()) {
      if (!o->all_tensors && shown++ >= 24) {
        std::printf("  ... %zu more (--all-tensors)\n", f.tensors().size() - 24);
        break;
      }
      std::printf("  %-32s %-6s %-20s %llu\n", t.name.c_str(), dtype_name(t.type),
                  fmt::format("{}", fmt::join(t.dims, " x ")).c_str(), static_cast<unsigned long long>(t.bytes));
    }
    std::printf("\narchitecture %s | dim %d | layers %d | heads %d (KV %d, head dim %d) | ffn %d | vocab %d | ctx %d\n",
                c.arch.c_str(), c.dim, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, c.ffn_dim, c.n_vocab,
                c.ctx_len);
    std::printf("parameters %.3f M | weights %s | tokenizer %s | output %s\n",
                static_cast<double>(model->weights().parameters) / 1e6,
                human_bytes(static_cast<double>(model->weights().mapped_bytes)).c_str(),
                model->tokenizer().kind().c_str(), model->weights().tied_output ? "tied" : "separate");
    int windowed = 0, window = 0;
    std::string global;
    for (int l = 0; l < c.n_layers; ++l) {
      const int w = c.layers[static_cast<size_t>(l)].window;
      if (w > 0) {
        ++windowed;
        window = w;
      } else {
        global += (global.empty() ? "" : ",") + std::to_string(l);
      }
    }
    std::printf("family %s (%s)\n", c.family.c_str(), arch_registry().find(c.arch)->summary.c_str());
    if (windowed > 0)
      std::printf("sliding window of %d tokens on %d of %d layers (global layers: %s)\n", window, windowed, c.n_layers,
                  global.empty() ? "none" : global.c_str());
    std::printf("KV bytes per token: %zu (f16), %zu (f32); at the full context of %d: %s (f16)\n", kv16, kv32,
                c.ctx_len, human_bytes(static_cast<double>(c.kv_bytes_for(c.ctx_len, 2))).c_str());
  });
}

void add_tokenize(CLI::App& app) {
  struct Opts {
    ModelOptions m;
    std::string prompt, file;
    bool bos = true, json = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand("tokenize", "print the token ids of a text (as the engine tokenizes prompts)");
  cmd->add_option("-m,--model", o->m.model, "GGUF model or a vocab-only GGUF (default: the bundled model)");
  auto* p = cmd->add_option("-p,--prompt", o->prompt, "text");
  cmd->add_option("-f,--file", o->file, "read the text from a file")->excludes(p);
  cmd->add_flag("!--no-bos", o->bos, "do not prepend BOS");
  cmd->add_flag("--json", o->json, "print JSON: ids and pieces");
  cmd->callback([o] {
    // Only the vocabulary is read: a vocab-only GGUF (llama.cpp's ggml-vocab-*.gguf) works too.
    auto file = GgufFile::open(resolve_model_path(o->m));
    auto tokenizer = Tokenizer::from_gguf(*file);
    std::string text = o->prompt;
    if (!o->file.empty()) {
      std::ifstream in(o->file, std::ios::binary);
      KV_CHECK(in.good(), "{}: cannot open", o->file);
      std::stringstream ss;
      ss << in.rdbuf();
      text = ss.str();
    }
    const Tokenizer& tok = *tokenizer;
    const std::vector<int32_t> ids = tok.encode(text, o->bos);
    if (o->json) {
      nlohmann::json j;
      j["ids"] = ids;
      for (int32_t id : ids) j["pieces"].push_back(tok.decode({id}));
      // A byte-fallback piece alone can be a partial UTF-8 sequence: replace it rather than throw.
      std::puts(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
      return;
    }
    std::puts(fmt::format("{}", fmt::join(ids, " ")).c_str());
  });
}

void add_convert(CLI::App& app) {
  struct Opts {
    std::string model_bin, tokenizer_bin, out;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand("convert", "convert a model from another format to GGUF");
  cmd->require_subcommand(1);
  CLI::App* l2c = cmd->add_subcommand("llama2c", "llama2.c checkpoint + tokenizer.bin -> GGUF (F32)");
  l2c->add_option("model", o->model_bin, "llama2.c model .bin")->required();
  l2c->add_option("tokenizer", o->tokenizer_bin, "llama2.c tokenizer .bin")->required();
  l2c->add_option("-o,--out", o->out, "output GGUF")->required();
  l2c->callback([o] {
    convert_llama2c(o->model_bin, o->tokenizer_bin, o->out);
    std::fprintf(stderr, "wrote %s\n", o->out.c_str());
  });
}

void add_quantize(CLI::App& app) {
  struct Opts {
    std::string in, out, type;
    bool quiet = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand("quantize", "re-quantize a GGUF model's weights");
  cmd->add_option("input", o->in, "input GGUF")->required();
  cmd->add_option("output", o->out, "output GGUF")->required();
  cmd->add_option("type", o->type, "preset: " + quant_preset_names() + " (llama.cpp's tensor mix)")->required();
  cmd->add_flag("-q,--quiet", o->quiet, "no per-tensor lines");
  cmd->callback([o] {
    Progress progress("quantize", 1);
    const QuantizeSummary s = quantize_model(o->in, o->out, o->type, [&](size_t done, size_t total) {
      progress.set_total(total);
      progress.update(done);
    });
    progress.finish();
    if (!o->quiet)
      for (const QuantizedTensor& t : s.tensors)
        std::fprintf(stderr, "  %-36s %-6s -> %-6s %s\n", t.name.c_str(), t.from.c_str(), t.to.c_str(),
                     t.reason.c_str());
    std::string mix;
    for (const auto& [type, n] : s.tensors_per_type) mix += fmt::format("{}{} {}", mix.empty() ? "" : ", ", n, type);
    std::fprintf(stderr, "wrote %s: %s\n", o->out.c_str(), mix.c_str());
    if (!s.fell_back.empty())
      std::fprintf(stderr,
                   "kvwise quantize: %zu tensor(s) took llama.cpp's fallback type because their rows do not fill "
                   "whole blocks of the preset's type (first: %s)\n",
                   s.fell_back.size(), s.fell_back.front().c_str());
  });
}

void add_make_model(CLI::App& app) {
  struct Opts {
    std::string shape, out, type, arch;
    int dim = 0, layers = 0, heads = 0, kv_heads = 0, ffn = 0, vocab = 0, ctx = 0, window = 0;
    float embed_scale = 0;
    uint64_t seed = 1;
    bool untied = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand("make-model", "write a random-weight model of a named real shape");
  cmd->add_option("--shape", o->shape, "shape: " + model_shape_names())->required();
  cmd->add_option("-o,--out", o->out, "output GGUF")->required();
  cmd->add_option("--type", o->type, "weight type (default: the shape's)");
  cmd->add_option("--arch", o->arch, "override: llama, mistral, qwen2, qwen3, gemma2, gemma3 or phi3");
  cmd->add_option("--dim", o->dim, "override: embedding width");
  cmd->add_option("--layers", o->layers, "override: layers");
  cmd->add_option("--heads", o->heads, "override: query heads");
  cmd->add_option("--kv-heads", o->kv_heads, "override: KV heads");
  cmd->add_option("--ffn", o->ffn, "override: feed-forward width");
  cmd->add_option("--vocab", o->vocab, "override: vocabulary size");
  cmd->add_option("--ctx", o->ctx, "override: context length");
  cmd->add_option("--window", o->window, "override: sliding window of the window layers (gemma2/3, phi3)")
      ->check(CLI::Range(1, 1 << 24));
  cmd->add_option("--embed-scale", o->embed_scale,
                  "token embeddings drawn from [-S, S] (default 1; gemma 1/sqrt(dim)); small values give the random "
                  "model softer output distributions (tied embeddings are also the output matrix)")
      ->check(CLI::Range(1e-6, 100.0));
  cmd->add_option("--seed", o->seed, "random seed");
  cmd->add_flag("--untied", o->untied, "separate output matrix");
  cmd->callback([o] {
    ModelShape s = model_shape(o->shape);
    if (!o->type.empty()) s.type = parse_dtype(o->type);
    if (!o->arch.empty()) s.arch = o->arch;
    if (o->dim) s.dim = o->dim;
    if (o->layers) s.n_layers = o->layers;
    if (o->heads) s.n_heads = o->heads;
    if (o->kv_heads) s.n_kv_heads = o->kv_heads;
    if (o->ffn) s.ffn_dim = o->ffn;
    if (o->vocab) s.n_vocab = o->vocab;
    if (o->ctx) s.ctx = o->ctx;
    if (o->window) s.window = o->window;
    if (o->embed_scale > 0) s.embed_scale = o->embed_scale;
    if (o->untied) s.tied = false;
    s.seed = o->seed;
    make_random_model(s, o->out);
    std::fprintf(stderr, "wrote %s\n", o->out.c_str());
  });
}

}  // namespace

void add_model_tools(CLI::App& app) {
  add_inspect(app);
  add_tokenize(app);
  add_convert(app);
  add_quantize(app);
  add_make_model(app);
}

}  // namespace kvwise::cli
