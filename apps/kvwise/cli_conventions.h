// The command line as users type it: llama.cpp's multi-letter short flags, the errors for unknown
// flags and subcommands (exit 2 with a hint), and --help that shows every default.
#pragma once
#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace kvwise::cli {

// llama.cpp spells some options as one dash and several letters (-ctk, -np, -fa), which CLI11 would
// read as a short flag and its value; they become the long names kvwise registers (--cache-type-k,
// --parallel, --flash-attn, --n-gpu-layers: an error unless 0). Everything else is returned unchanged.
std::vector<std::string> translate_llamacpp_flags(const std::vector<std::string>& args);

// The closest option name of `cmd` to `typed` (edit distance, or a prefix), or "" when none is close.
std::string closest_option(const CLI::App& cmd, const std::string& typed);
std::string closest_subcommand(const CLI::App& app, const std::string& typed);

// Parses and runs: returns the process's exit code. 0 for --help/--version, 2 for a bad command line
// (with the offending flag or subcommand named and a hint), 1 for an error while running.
int run_command_line(CLI::App& app, int argc, char** argv);

}  // namespace kvwise::cli
