// Named policies: the spec grammar's names mapped to stage compositions with each method's published
// defaults (kv-algorithms §0.4). Policy names: full, random, streamingllm, h2o, snapkv, pyramidkv,
// adakv, cake, sagekv, baklava; compositions such as adakv(snapkv), adakv(pyramidkv), adakv(cake),
// baklava(sagekv).
#pragma once
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "compress/pipeline.h"

namespace kvwise {

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

// Throws kvwise::Error on an unknown name or parameter, a bad value, a missing profile or a file that
// an untrusted spec names.
std::shared_ptr<const KvPolicy> make_policy(std::string_view spec, const Budget& budget,
                                            const PolicySource& source = {});

struct PolicyInfo {
  std::string name;
  std::string summary;
  std::string params;  // key=default, ...
};
const std::vector<PolicyInfo>& policy_catalog();
std::string policy_help();  // one line per policy, for --help texts and errors

}  // namespace kvwise
