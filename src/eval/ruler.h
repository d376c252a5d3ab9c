// A RULER-style long-context suite (Hsieh et al., arXiv:2404.06654) at the bundled model's lengths:
// single-, multi-key, multi-value and multi-query needle retrieval, variable tracking, common- and
// frequent-words extraction. Cases are seeded and reproducible. The retrieval tasks use the templates
// the bundled model was trained on (tools/train/tasks.py: passkey, needle, "The code for X is N",
// "VAR X = N"); multi-value and the two extraction tasks are outside its training and are reported
// as measured (the full cache is the reference for every policy). Scoring is RULER's string match:
// the share of a case's reference answers found in the model's output.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "compress/pipeline.h"
#include "model/forward.h"

namespace kvwise {

struct RulerOptions {
  std::string haystack_dir;  // essays (the needle tasks' haystack)
  uint64_t seed = 1;
};

// One question and what its answer must contain.
struct RulerTurn {
  std::vector<int32_t> question;
  std::vector<std::string> answers;
  int max_tokens = 12;
  bool numeric = true;  // generation stops after a number and its period
};

struct RulerCase {
  std::string task;
  int length = 0;                // context + first question, in tokens
  std::vector<int32_t> context;  // BOS included
  std::vector<RulerTurn> turns;
  int total_tokens() const;  // context + every question + every answer budget
};

class RulerBuilder {
 public:
  RulerBuilder(const Tokenizer& tok, const RulerOptions& o);
  // Throws on an unknown task or a length too short for the task's inserts.
  RulerCase build(const std::string& task, int length, int index) const;
  static const std::vector<std::string>& tasks();

 private:
  const Tokenizer& tok_;
  RulerOptions o_;
  std::vector<int32_t> essay_, grass_;
  std::vector<std::string> words_;  // distinct plain words of the essays (extraction tasks)
};

struct RulerOutcome {
  double score = 0;  // found / answers
  int answers = 0, found = 0;
  std::string output;  // the turns' outputs, joined by " | "
  size_t hot_bytes = 0;
  double compress_seconds = 0;
};

// query_agnostic: the policy compresses the context alone; every question is prefilled afterwards
// into the compressed cache. Otherwise the policy compresses context + first question.
RulerOutcome run_ruler_case(Engine& engine, const RulerCase& c, std::shared_ptr<const KvPolicy> policy,
                            bool query_agnostic);

}  // namespace kvwise
