#include "compress/method.h"

#include <algorithm>
#include <stdexcept>

#include "base/error.h"
#include "compress/components.h"
#include "compress/pipeline.h"
#include "compress/registry.h"

namespace kvwise {

// Generated from compress/methods/*.cpp (src/CMakeLists.txt): calls every file's KVWISE_METHODS.
void kvwise_register_all_methods(MethodRegistry& registry);

namespace {

constexpr const char* kGroups[] = {"reference", "eviction",      "head-budgets", "wrapper",
                                   "learned",   "low-precision", "offload"};

int group_rank(const std::string& g) {
  for (size_t i = 0; i < std::size(kGroups); ++i)
    if (g == kGroups[i]) return static_cast<int>(i);
  return static_cast<int>(std::size(kGroups));
}

// Parameters that carry a path: only the CLI's user may give them.
void refuse_paths(const PolicySpec& spec, const PolicySource& src) {
  if (src.trusted) return;
  for (const char* key : {"path", "dir", "file"})
    KV_CHECK(!spec.params.count(key),
             "{}: parameter '{}' names a file, and a request cannot name files on the server ({})", spec.name, key,
             std::string(key) == "file" ? "use gate(name=NAME) with a gate the operator registered by --gate NAME=FILE"
                                        : "SpeCache's cold files go to the operator's --cold-dir");
}

}  // namespace

ParamSchema ParamSchema::integer(std::string name, int def, int min, int max, std::string help) {
  ParamSchema p;
  p.name = std::move(name);
  p.type = Type::Int;
  p.def = std::to_string(def);
  p.min = min;
  p.max = max;
  p.help = std::move(help);
  return p;
}

ParamSchema ParamSchema::real(std::string name, double def, double min, double max, std::string help) {
  ParamSchema p;
  p.name = std::move(name);
  p.type = Type::Double;
  p.def = fmt::format("{}", def);
  p.min = min;
  p.max = max;
  p.help = std::move(help);
  return p;
}

ParamSchema ParamSchema::choice(std::string name, std::string def, std::vector<std::string> choices, std::string help) {
  ParamSchema p;
  p.name = std::move(name);
  p.type = Type::Choice;
  p.def = std::move(def);
  p.choices = std::move(choices);
  p.help = std::move(help);
  if (std::find(p.choices.begin(), p.choices.end(), p.def) == p.choices.end())
    throw std::logic_error("parameter " + p.name + ": default " + p.def + " is not a choice");
  return p;
}

ParamSchema ParamSchema::text(std::string name, std::string def, std::string help) {
  ParamSchema p;
  p.name = std::move(name);
  p.type = Type::String;
  p.def = std::move(def);
  p.help = std::move(help);
  return p;
}

std::string ParamSchema::describe() const {
  std::string s = name + "=";
  if (type == Type::Choice) {
    s += def;  // the default first
    for (const std::string& c : choices)
      if (c != def) s += "|" + c;
  } else if (type == Type::String && def.empty()) {
    s += help.empty() ? "" : help;
    return s;
  } else {
    s += def;
  }
  if (!help.empty()) s += " (" + help + ")";
  return s;
}

MethodArgs::MethodArgs(const MethodInfo& info, const PolicySpec& spec, const PolicySource& source)
    : info_(info), spec_(spec), source_(source), params_(spec) {
  for (const auto& [key, value] : spec.params) {
    const bool known =
        std::any_of(info.params.begin(), info.params.end(), [&](const ParamSchema& p) { return p.name == key; });
    if (known) continue;
    std::string names;
    for (const ParamSchema& p : info.params) names += (names.empty() ? "" : ", ") + p.name;
    const std::string shown = key.size() > 32 ? key.substr(0, 32) + "..." : key;
    fail("{}: unknown parameter '{}' ({})", spec.name, shown,
         names.empty() ? "it takes no parameters" : "its parameters: " + names);
  }
}

const ParamSchema& MethodArgs::schema(const std::string& name, ParamSchema::Type type) const {
  for (const ParamSchema& p : info_.params)
    if (p.name == name) {
      if (p.type != type) throw std::logic_error(info_.name + ": parameter " + name + " read with another type");
      return p;
    }
  throw std::logic_error(info_.name + ": parameter " + name + " is not in its schema");
}

int MethodArgs::integer(const std::string& name) {
  const ParamSchema& p = schema(name, ParamSchema::Type::Int);
  return params_.get_int(name, std::stoi(p.def), static_cast<int>(p.min), static_cast<int>(p.max));
}

double MethodArgs::real(const std::string& name) {
  const ParamSchema& p = schema(name, ParamSchema::Type::Double);
  return params_.get_double(name, std::stod(p.def), p.min, p.max);
}

std::string MethodArgs::choice(const std::string& name) {
  const ParamSchema& p = schema(name, ParamSchema::Type::Choice);
  return params_.get_choice(name, p.def, p.choices);
}

std::string MethodArgs::text(const std::string& name) {
  const ParamSchema& p = schema(name, ParamSchema::Type::String);
  return params_.get_string(name, p.def);
}

bool MethodArgs::given(const std::string& name) const {
  return spec_.params.count(name) != 0;
}

void MethodArgs::build_inner(KvPolicy& p) {
  if (info_.default_inner.empty()) throw std::logic_error(info_.name + " builds an inner policy but takes none");
  const PolicySpec inner = spec_.inner.empty() ? parse_policy_spec(info_.default_inner) : spec_.inner[0];
  build_method(p, inner, source_);
}

void MethodRegistry::add(MethodInfo info) {
  if (!info.build) throw std::logic_error("method " + info.name + " has no builder");
  if (find(info.name) != nullptr) throw std::logic_error("method " + info.name + " is registered twice");
  methods_.push_back(std::move(info));
}

const MethodInfo* MethodRegistry::find(const std::string& name) const {
  for (const MethodInfo& m : methods_)
    if (m.name == name) return &m;
  return nullptr;
}

void MethodRegistry::sort() {
  std::stable_sort(methods_.begin(), methods_.end(), [](const MethodInfo& a, const MethodInfo& b) {
    const int ga = group_rank(a.group), gb = group_rank(b.group);
    return ga != gb ? ga < gb : a.name < b.name;
  });
}

const MethodRegistry& method_registry() {
  static const MethodRegistry r = [] {
    MethodRegistry m;
    kvwise_register_all_methods(m);
    m.sort();
    return m;
  }();
  return r;
}

const std::string& registered_file(const std::map<std::string, std::string>& files, const std::string& name,
                                   const char* what, const char* flag) {
  auto it = files.find(name);
  if (it != files.end()) return it->second;
  const bool plain = !name.empty() && name.size() <= 64 && name.find_first_of("/\\") == std::string::npos;
  std::string known;
  for (const auto& [k, v] : files) known += (known.empty() ? "" : ", ") + k;
  fail("no {} named {} is registered on this server (the operator registers them with {} NAME=FILE; known: {})", what,
       plain ? "'" + name + "'" : std::string("so"), flag, known.empty() ? "none" : known);
}

void build_method(KvPolicy& p, const PolicySpec& spec, const PolicySource& src) {
  const std::string& n = spec.name;
  const MethodInfo* m = method_registry().find(n);
  if (m == nullptr)
    fail("unknown KV policy \"{}\"; known policies:\n{}", n.size() > 64 ? n.substr(0, 64) + "..." : n, policy_help());
  refuse_paths(spec, src);
  if (m->default_inner.empty()) {
    std::string composing;
    for (const MethodInfo& c : method_registry().all())
      if (!c.default_inner.empty()) composing += (composing.empty() ? "" : ", ") + c.name;
    KV_CHECK(spec.inner.empty(), "{} does not take an inner policy (only {} compose)", n, composing);
  }
  KV_CHECK(spec.inner.size() <= 1, "{} takes at most one inner policy", n);
  // Each stage starts at its neutral choice; a builder that composes builds its inner spec first.
  p.name = n;
  p.layers = make_uniform_layers();
  p.heads = make_uniform_heads();
  p.disposition = make_drop();
  p.decode = make_grow();
  MethodArgs args(*m, spec, src);
  m->build(p, args);
  if (m->budget != BudgetUse::Inherit) p.budget_use = m->budget;
  p.name = n;
}

}  // namespace kvwise
