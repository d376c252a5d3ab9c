// The extension point of per-request KV compression: a method (a named policy of the spec grammar)
// is one file under compress/methods/ that registers its name, one-line summary, paper, parameter
// schema (names, types, ranges, defaults) and builder. The build system lists those files
// (src/CMakeLists.txt generates the index that calls each file's KVWISE_METHODS function), so adding a
// method touches nothing else; the catalogue, --help texts and the docs' table are generated from the
// registrations (policy_catalog(), policy_help(), `kvwise policies --markdown`).
//
// A builder reads its parameters through MethodArgs, which takes defaults and ranges from the schema:
// the documented default is the default that runs. Thread safety: the registry is built once, on
// first use (a function-local static), and is read-only afterwards.
#pragma once
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "compress/policy_spec.h"

namespace kvwise {

struct KvPolicy;

// Where a spec comes from. The CLI's user may name files in it (gate(file=), baklava(profile=FILE),
// specache(dir=, path=)); a request to the server may not: it names, by gate(name=) and
// baklava(profile=NAME), the files its operator registered at startup, and its SpeCache cold files go
// to the operator's directory. A path-bearing parameter in an untrusted spec is an error that names the
// parameter, never the file.
struct PolicySource {
  bool trusted = true;
  std::map<std::string, std::string> gates;     // name -> gate GGUF (kvwise serve --gate NAME=FILE)
  std::map<std::string, std::string> profiles;  // name -> BaKlaVa profile (kvwise serve --profile NAME=FILE)
  std::string cold_dir;                         // SpeCache cold files of untrusted specs ("": a private temp dir)
};

// Whether a policy reads the KV budget: eviction policies need one; uniform quantisation and SpeCache
// keep every token (a budget is ignored, with a warning on the CLI); the gate decides by itself and
// takes a budget as an optional cap. Composing methods inherit their inner policy's answer.
enum class BudgetUse { Required, Optional, Ignored, Inherit };

struct ParamSchema {
  enum class Type { Int, Double, Choice, String };
  std::string name;
  Type type = Type::Int;
  std::string def;  // the default as written in a spec ("" for a String without one)
  double min = 0, max = 0;
  std::vector<std::string> choices;
  std::string help;  // short; may be empty

  static ParamSchema integer(std::string name, int def, int min, int max, std::string help = "");
  static ParamSchema real(std::string name, double def, double min, double max, std::string help = "");
  static ParamSchema choice(std::string name, std::string def, std::vector<std::string> choices, std::string help = "");
  static ParamSchema text(std::string name, std::string def = "", std::string help = "");
  std::string describe() const;  // "window=32", "pool=avg|max|none", "profile=FILE"
};

class MethodArgs;

struct MethodInfo {
  std::string name;
  std::string summary;  // one line
  std::string paper;    // "arXiv:2404.14469" (or a project name for methods without a paper)
  // Catalogue section: reference, eviction, head-budgets, wrapper, low-precision, offload, learned.
  std::string group;
  std::vector<ParamSchema> params;
  // Composing methods: the inner spec used when none is given ("" = the method takes no inner spec).
  std::string default_inner;
  // A spec that builds with no files (tests and docs build every method through it); "" = the name.
  std::string example;
  BudgetUse budget = BudgetUse::Required;
  // True when the method's details are approximated (the docs flag it; the summary says how).
  bool approximation = false;
  std::function<void(KvPolicy&, MethodArgs&)> build;
};

// A builder's view of its spec: typed parameters checked against the schema, the inner spec, where
// the spec came from. Every given parameter must be in the schema (a typo is an error that lists the
// method's parameters).
class MethodArgs {
 public:
  MethodArgs(const MethodInfo& info, const PolicySpec& spec, const PolicySource& source);
  int integer(const std::string& name);
  double real(const std::string& name);
  std::string choice(const std::string& name);
  std::string text(const std::string& name);
  bool given(const std::string& name) const;
  const PolicySpec& spec() const { return spec_; }
  const PolicySource& source() const { return source_; }
  // Builds the inner spec (or the method's default inner) into the policy.
  void build_inner(KvPolicy& p);

 private:
  const ParamSchema& schema(const std::string& name, ParamSchema::Type type) const;
  const MethodInfo& info_;
  const PolicySpec& spec_;
  const PolicySource& source_;
  SpecParams params_;
};

class MethodRegistry {
 public:
  void add(MethodInfo info);  // throws on a duplicate name or a schema without a builder
  const MethodInfo* find(const std::string& name) const;
  // Sorted by group (in the order above), then by name.
  const std::vector<MethodInfo>& all() const { return methods_; }
  void sort();

 private:
  std::vector<MethodInfo> methods_;
};

const MethodRegistry& method_registry();

// The largest sinks=/window=/recent= a spec may give.
inline constexpr int kMaxPolicyWindow = 1 << 20;

// A file the server's operator registered by name (gate(name=), baklava(profile=NAME)); throws an
// error that echoes the name only when it is a plain name, and lists the registered names.
const std::string& registered_file(const std::map<std::string, std::string>& files, const std::string& name,
                                   const char* what, const char* flag);

// Builds one spec (and, through MethodArgs::build_inner, its inner specs) into a policy.
void build_method(KvPolicy& p, const PolicySpec& spec, const PolicySource& source);

// A method file's registration function: KVWISE_METHODS(file_stem) { registry.add({...}); }. The
// stem is the file's name with non-identifier characters replaced by '_'.
#define KVWISE_METHODS(stem) void kvwise_register_methods_##stem(::kvwise::MethodRegistry& registry)

}  // namespace kvwise
