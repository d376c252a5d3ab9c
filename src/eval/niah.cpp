#include "eval/niah.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "base/error.h"
#include "base/timer.h"
#include "model/sampler.h"

namespace kvwise {

std::string read_haystack(const std::string& dir) {
  KV_CHECK(std::filesystem::is_directory(dir), "haystack directory {} does not exist", dir);
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.is_regular_file() && e.path().extension() == ".txt") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  KV_CHECK(!files.empty(), "haystack directory {} has no .txt files", dir);
  std::string text;
  for (const auto& f : files) {
    std::ifstream in(f);
    std::stringstream ss;
    ss << in.rdbuf();
    text += ss.str() + "\n\n";
  }
  return text;
}

const char* const kPasskeyFiller =
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. ";

NiahBuilder::NiahBuilder(const Tokenizer& tok, const NiahOptions& o) : tok_(tok), o_(o) {
  KV_CHECK(o.task == "needle" || o.task == "passkey", "unknown NIAH task \"{}\" (needle, passkey)", o.task);
  std::string text;
  if (o.task == "needle") {
    text = read_haystack(o.haystack_dir);
  } else {
    for (int i = 0; i < 3000; ++i) text += kPasskeyFiller;
  }
  filler_ = tok.encode(text, false);
}

NiahCase NiahBuilder::build(int length, double depth, int index) const {
  std::mt19937_64 rng(o_.seed * 1000003ULL + static_cast<uint64_t>(index));
  NiahCase c;
  c.length = length;
  c.depth = depth;
  std::string needle, question;
  if (o_.task == "needle") {
    c.answer = std::to_string(1000000 + rng() % 9000000);
    needle = " The special magic number is " + c.answer + ". ";
    question = "\n\nWhat is the special magic number mentioned in the text above? The special magic number is";
  } else {
    c.answer = std::to_string(10000 + rng() % 90000);
    needle = " The pass key is " + c.answer + ". Remember it. " + c.answer + " is the pass key. ";
    question = "\n\nWhat is the pass key? The pass key is";
  }
  question += o_.answer_prefix;
  const std::vector<int32_t> nt = tok_.encode(needle, false), qt = tok_.encode(question, false);
  const int bos = tok_.bos() >= 0 ? 1 : 0;
  const int n_filler = length - bos - static_cast<int>(nt.size() + qt.size());
  KV_CHECK(n_filler >= 1, "NIAH length {} is too short for the needle and the question", length);
  KV_CHECK(static_cast<size_t>(n_filler) <= filler_.size(), "NIAH length {} needs more filler than the haystack has",
           length);
  // Insert at the requested depth, moved back to just after a sentence end when one is near.
  int at = static_cast<int>(depth * n_filler + 0.5);
  for (int back = 0; back < 64 && at - back > 0; ++back) {
    const std::string piece = tok_.decode({filler_[static_cast<size_t>(at - back - 1)]});
    if (!piece.empty() && piece.back() == '.') {
      at -= back;
      break;
    }
  }
  if (bos) c.prompt.push_back(tok_.bos());
  c.prompt.insert(c.prompt.end(), filler_.begin(), filler_.begin() + at);
  c.prompt.insert(c.prompt.end(), nt.begin(), nt.end());
  c.prompt.insert(c.prompt.end(), filler_.begin() + at, filler_.begin() + n_filler);
  c.context = static_cast<int>(c.prompt.size());
  c.prompt.insert(c.prompt.end(), qt.begin(), qt.end());
  return c;
}

NiahOutcome run_niah_case(Engine& engine, const NiahCase& c, std::shared_ptr<const KvPolicy> policy, int answer_tokens,
                          const std::function<int(SeqId)>& preload, bool query_agnostic) {
  const int V = engine.model().config().n_vocab;
  const Tokenizer& tok = engine.model().tokenizer();
  NiahOutcome out;
  const SeqId seq = engine.new_sequence();
  try {
    const double t0 = now_seconds();
    const int n = static_cast<int>(c.prompt.size());
    const int compressed = query_agnostic ? c.context : n;
    KV_CHECK(compressed > 0 && compressed <= n, "NIAH case without a context");
    auto comp = attach_policy(engine, seq, policy, compressed);
    const int loaded = preload ? preload(seq) : 0;
    KV_ASSERT(loaded >= 0 && loaded < compressed, "preloaded {} of {} prompt tokens", loaded, compressed);
    const std::span<const int32_t> prompt(c.prompt);
    std::vector<float> logits =
        engine.prefill(seq, prompt.subspan(static_cast<size_t>(loaded), static_cast<size_t>(compressed - loaded)));
    // Query-agnostic: the question enters the cache the policy has already compressed.
    if (compressed < n) logits = engine.prefill(seq, prompt.subspan(static_cast<size_t>(compressed)));
    out.prefill_seconds = now_seconds() - t0;
    // The gate's own K/V cache is memory the policy needs: it counts as hot bytes.
    out.hot_bytes = engine.kv().bytes_sequence(seq) + (comp ? comp->report().gate_cache_bytes : 0);
    std::vector<int32_t> gen;
    for (int i = 0; i < answer_tokens; ++i) {
      const int32_t next = argmax(logits.data(), V);
      if (tok.is_end_of_generation(next)) break;
      gen.push_back(next);
      if (i + 1 == answer_tokens || engine.kv().next_position(seq) >= engine.ctx()) break;
      const double t1 = now_seconds();
      logits = engine.decode(seq, next);
      out.decode_seconds += now_seconds() - t1;
      ++out.decode_steps;
    }
    out.output = tok.decode(gen);
  } catch (...) {
    engine.free_sequence(seq);
    throw;
  }
  engine.free_sequence(seq);
  out.correct = out.output.find(c.answer) != std::string::npos;
  return out;
}

}  // namespace kvwise
