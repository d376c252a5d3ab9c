#include "compress/registry.h"

#include <fmt/format.h>

#include "compress/method.h"
#include "compress/policy_spec.h"

namespace kvwise {

std::shared_ptr<const KvPolicy> make_policy(std::string_view text, const Budget& budget, const PolicySource& source) {
  const PolicySpec spec = parse_policy_spec(text);
  auto p = std::make_shared<KvPolicy>();
  build_method(*p, spec, source);
  p->spec = spec.to_string();
  p->name = spec.name;
  p->budget = budget;
  return p;
}

namespace {

std::string params_text(const MethodInfo& m) {
  std::string s;
  for (const ParamSchema& p : m.params) s += (s.empty() ? "" : ", ") + p.describe();
  return s;
}

const char* budget_text(BudgetUse b) {
  switch (b) {
    case BudgetUse::Required:
      return "required";
    case BudgetUse::Optional:
      return "optional cap";
    case BudgetUse::Ignored:
      return "ignored (keeps every token)";
    case BudgetUse::Inherit:
      return "as the inner policy";
  }
  return "";
}

}  // namespace

const std::vector<PolicyInfo>& policy_catalog() {
  static const std::vector<PolicyInfo> c = [] {
    std::vector<PolicyInfo> out;
    for (const MethodInfo& m : method_registry().all())
      out.push_back({m.name, m.summary, params_text(m), m.paper, m.group, m.example.empty() ? m.name : m.example,
                     m.budget, !m.default_inner.empty(), m.approximation});
    return out;
  }();
  return c;
}

std::string policy_help() {
  std::string s;
  for (const PolicyInfo& p : policy_catalog())
    s += fmt::format("  {:<18} {}{}\n", p.name + (p.composes ? "(X)" : ""), p.summary,
                     p.params.empty() ? "" : " [" + p.params + "]");
  return s;
}

std::string policy_table_markdown() {
  std::string s =
      "| policy | group | summary | paper | parameters (defaults) | budget |\n"
      "|---|---|---|---|---|---|\n";
  auto cell = [](std::string t) {
    for (size_t at = t.find('|'); at != std::string::npos; at = t.find('|', at + 2)) t.replace(at, 1, "\\|");
    return t;
  };
  for (const PolicyInfo& p : policy_catalog())
    s += fmt::format("| `{}` | {} | {}{} | {} | {} | {} |\n", p.name + (p.composes ? "(X)" : ""), p.group,
                     cell(p.summary), p.approximation ? " [approximation]" : "", p.paper,
                     p.params.empty() ? "" : cell("`" + p.params + "`"), budget_text(p.budget));
  return s;
}

}  // namespace kvwise
