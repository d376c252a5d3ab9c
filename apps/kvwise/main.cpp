// kvwise: one binary, one subcommand per job.
#include <CLI/CLI.hpp>

#include "cli_conventions.h"
#include "common.h"

int main(int argc, char** argv) {
  CLI::App app{"kvwise: an LLM inference engine whose KV cache is managed by policy"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "kvwise 0.1.0");
  // --help shows every option's default (subcommands inherit this when they are added).
  app.option_defaults()->always_capture_default();
  kvwise::cli::add_demo(app);
  kvwise::cli::add_generate(app);
  kvwise::cli::add_perplexity(app);
  kvwise::cli::add_bench(app);
  kvwise::cli::add_model_tools(app);
  kvwise::cli::add_sim(app);
  kvwise::cli::add_eval(app);
  kvwise::cli::add_profile(app);
  kvwise::cli::add_serve(app);
  kvwise::cli::add_route(app);
  kvwise::cli::add_loadgen(app);
  kvwise::cli::add_report(app);
  kvwise::cli::add_policies(app);
  return kvwise::cli::run_command_line(app, argc, argv);
}
