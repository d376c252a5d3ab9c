// kvwise: one binary, one subcommand per job.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "base/error.h"
#include "common.h"

int main(int argc, char** argv) {
  CLI::App app{"kvwise: an LLM inference engine whose KV cache is managed by policy"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "kvwise 0.1.0");
  kvwise::cli::add_generate(app);
  kvwise::cli::add_perplexity(app);
  kvwise::cli::add_bench(app);
  kvwise::cli::add_model_tools(app);
  kvwise::cli::add_sim(app);
  kvwise::cli::add_eval(app);
  kvwise::cli::add_profile(app);
  kvwise::cli::add_serve(app);
  kvwise::cli::add_loadgen(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const kvwise::Error& e) {
    std::fprintf(stderr, "kvwise: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "kvwise: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kvwise: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
