// What the `kvwise eval` commands share: the policy x budget sweep options and grid, and the files
// they write next to their plots.
#pragma once
#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <vector>

#include "compress/registry.h"

namespace kvwise::cli {

extern const char* const kDefaultPolicies;

struct SweepOptions {
  std::string policies = kDefaultPolicies;
  std::string budgets = "0.5,0.25,0.1";
  bool json = false;
  std::string plot_dir;
};
void add_sweep_options(CLI::App& cmd, SweepOptions& o);
// Every (budget, policy) pair; `full` once, whatever the budgets; policies that ignore the budget once.
std::vector<std::shared_ptr<const KvPolicy>> policy_grid(const SweepOptions& o);

void write_file(const std::string& path, const std::string& text);
void prepare_plot_dir(const std::string& dir);  // creates it ("" = no plots)
// A legend label: the spec with file paths cut to their base names.
std::string short_label(std::string spec);

// kvwise eval ruler (cmd_eval_ruler.cpp).
void add_ruler(CLI::App& eval);

}  // namespace kvwise::cli
