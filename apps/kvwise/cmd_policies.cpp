// kvwise policies: the KV compression methods this binary registers (compress/methods/), as a table,
// the docs' Markdown table, or JSON.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "common.h"
#include "compress/registry.h"

namespace kvwise::cli {

void add_policies(CLI::App& app) {
  struct Opts {
    bool markdown = false, json = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd =
      app.add_subcommand("policies", "list the KV compression policies (--kv-policy names) and their parameters");
  cmd->add_flag("--markdown", o->markdown, "the table of docs/compression.md");
  cmd->add_flag("--json", o->json, "one object per policy");
  cmd->callback([o] {
    if (o->markdown) {
      std::fputs(policy_table_markdown().c_str(), stdout);
    } else if (o->json) {
      nlohmann::json out = nlohmann::json::array();
      for (const PolicyInfo& p : policy_catalog())
        out.push_back({{"name", p.name},
                       {"summary", p.summary},
                       {"paper", p.paper},
                       {"group", p.group},
                       {"params", p.params},
                       {"example", p.example},
                       {"composes", p.composes},
                       {"approximation", p.approximation},
                       {"budget", p.budget == BudgetUse::Required   ? "required"
                                  : p.budget == BudgetUse::Optional ? "optional"
                                  : p.budget == BudgetUse::Ignored  ? "ignored"
                                                                    : "inherited"}});
      std::printf("%s\n", out.dump(2).c_str());
    } else {
      std::fputs(policy_help().c_str(), stdout);
    }
  });
}

}  // namespace kvwise::cli
