#include "eval_sweep.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/error.h"
#include "compress/policy_spec.h"

namespace kvwise::cli {

const char* const kDefaultPolicies = "random,streamingllm,h2o,snapkv,pyramidkv,adakv,cake,sagekv";

void add_sweep_options(CLI::App& cmd, SweepOptions& o) {
  cmd.add_option("--policies", o.policies,
                 "policy specs, comma separated (commas inside parentheses belong to a spec)");
  cmd.add_option("--budgets", o.budgets, "budgets, comma separated: ratios (0.25) or tokens per head (256)");
  cmd.add_flag("--json", o.json, "print JSON");
  cmd.add_option("--plot", o.plot_dir, "directory for SVG plots, CSV and JSON");
}

// Every (budget, policy) pair; `full` once, whatever the budgets.
std::vector<std::shared_ptr<const KvPolicy>> policy_grid(const SweepOptions& o) {
  std::vector<std::string> budgets;
  std::stringstream ss(o.budgets);
  for (std::string b; std::getline(ss, b, ',');) budgets.push_back(b);
  KV_CHECK(!budgets.empty(), "--budgets is empty");
  std::vector<std::shared_ptr<const KvPolicy>> grid;
  bool full_done = false;
  for (const std::string& spec : split_policy_list(o.policies)) {
    if (parse_policy_spec(spec).name == "full") {
      if (!full_done) grid.push_back(make_policy(spec, Budget{}));
      full_done = true;
      continue;
    }
    if (auto p = make_policy(spec, Budget{}); !p->reads_budget()) {  // keeps every token: no budget to sweep
      grid.push_back(p);
      continue;
    }
    for (const std::string& b : budgets) grid.push_back(make_policy(spec, Budget::parse(b)));
  }
  return grid;
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  KV_CHECK(f.good(), "{}: cannot create", path);
  f << text;
}

void prepare_plot_dir(const std::string& dir) {
  if (dir.empty()) return;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  KV_CHECK(!ec, "{}: cannot create directory: {}", dir, ec.message());
}

// A legend label: the spec with file paths cut to their base names.
std::string short_label(std::string spec) {
  for (size_t at = spec.find("profile="); at != std::string::npos; at = spec.find("profile=", at + 1)) {
    const size_t start = at + 8, end = spec.find_first_of(",)", start);
    const std::string path = spec.substr(start, end - start);
    const size_t slash = path.rfind('/');
    if (slash != std::string::npos) spec.replace(start, end - start, path.substr(slash + 1));
  }
  return spec;
}

}  // namespace kvwise::cli
