#include "eval/ruler.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <random>
#include <set>
#include <sstream>

#include "base/error.h"
#include "base/timer.h"
#include "eval/niah.h"
#include "model/sampler.h"

namespace kvwise {

namespace {

// The key-value names of the bundled model's training data (tools/train/tasks.py).
const char* const kNames[] = {"apple",  "river",  "stone",  "cloud",  "tiger",   "maple",  "silver",  "orange",
                              "castle", "garden", "pencil", "rocket", "violet",  "harbor", "lantern", "meadow",
                              "copper", "falcon", "window", "marble", "candle",  "forest", "dragon",  "summer",
                              "winter", "button", "ocean",  "rabbit", "thunder", "garlic", "pirate",  "jungle",
                              "bridge", "mirror", "saddle", "planet", "shadow",  "velvet", "wizard",  "basket"};
constexpr int kNameCount = static_cast<int>(std::size(kNames));
const char kVarLetters[] = "ABCDEFGHJKMNPQRSTUVWXYZ";

std::string number(std::mt19937_64& rng, int digits) {
  uint64_t lo = 1;
  for (int i = 1; i < digits; ++i) lo *= 10;
  return std::to_string(lo + rng() % (9 * lo));
}

template <typename T>
std::vector<T> sample(std::mt19937_64& rng, const std::vector<T>& from, int k) {
  std::vector<T> v = from;
  std::shuffle(v.begin(), v.end(), rng);
  v.resize(static_cast<size_t>(std::min<int>(k, static_cast<int>(v.size()))));
  return v;
}

std::vector<std::string> names() {
  return {std::begin(kNames), std::end(kNames)};
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

int RulerCase::total_tokens() const {
  int n = static_cast<int>(context.size());
  for (const RulerTurn& t : turns) n += static_cast<int>(t.question.size()) + t.max_tokens;
  return n;
}

const std::vector<std::string>& RulerBuilder::tasks() {
  static const std::vector<std::string> t = {"niah_single_1",
                                             "niah_single_2",
                                             "niah_multikey_1",
                                             "niah_multikey_2",
                                             "niah_multivalue",
                                             "niah_multiquery",
                                             "vt",
                                             "cwe",
                                             "fwe"};
  return t;
}

RulerBuilder::RulerBuilder(const Tokenizer& tok, const RulerOptions& o) : tok_(tok), o_(o) {
  const std::string essays = read_haystack(o.haystack_dir);
  essay_ = tok.encode(essays, false);
  std::string grass;
  for (int i = 0; i < 400; ++i) grass += kPasskeyFiller;
  grass_ = tok.encode(grass, false);
  std::set<std::string> seen;
  std::istringstream in(essays);
  for (std::string w; in >> w && words_.size() < 2000;) {
    if (w.size() < 4 || w.size() > 9) continue;
    if (!std::all_of(w.begin(), w.end(), [](char c) { return c >= 'a' && c <= 'z'; })) continue;
    if (seen.insert(w).second) words_.push_back(w);
  }
  KV_CHECK(words_.size() >= 200, "the haystack {} has too few distinct words", o.haystack_dir);
}

RulerCase RulerBuilder::build(const std::string& task, int length, int index) const {
  const auto& all = tasks();
  KV_CHECK(std::find(all.begin(), all.end(), task) != all.end(), "unknown RULER task \"{}\"", task);
  std::mt19937_64 rng(o_.seed * 1000003ULL + static_cast<uint64_t>(index) * 7919ULL + std::hash<std::string>{}(task));
  RulerCase c;
  c.task = task;
  c.length = length;
  auto enc = [&](const std::string& s) { return tok_.encode(s, false); };
  auto turn = [&](const std::string& q, std::vector<std::string> answers, int max_tokens, bool numeric) {
    c.turns.push_back({enc(q), std::move(answers), max_tokens, numeric});
  };
  // Inserts placed at seeded, increasing depths of a filler (moved back to a sentence end nearby), as
  // the model's training data does.
  std::vector<std::vector<int32_t>> inserts;
  bool grass = false;
  bool filler = true;
  std::vector<int32_t> body;  // for the extraction tasks: the whole context after BOS
  if (task == "niah_single_1") {
    const std::string k = number(rng, 5);
    inserts.push_back(enc(" The pass key is " + k + ". Remember it. " + k + " is the pass key. "));
    turn("\n\nWhat is the pass key? The pass key is", {k}, 12, true);
    grass = true;
  } else if (task == "niah_single_2") {
    const std::string k = number(rng, 7);
    inserts.push_back(enc(" The special magic number is " + k + ". "));
    turn("\n\nWhat is the special magic number mentioned in the text above? The special magic number is", {k}, 12,
         true);
  } else if (task == "niah_multikey_1" || task == "niah_multiquery") {
    const auto who = sample(rng, names(), 4);
    std::vector<std::string> codes;
    for (size_t i = 0; i < who.size(); ++i) {
      codes.push_back(number(rng, 4 + static_cast<int>(rng() % 3)));
      inserts.push_back(enc(" The code for " + who[i] + " is " + codes[i] + ". "));
    }
    std::vector<int> asked = {static_cast<int>(rng() % who.size())};
    if (task == "niah_multiquery") asked = {0, 1, 2, 3}, std::shuffle(asked.begin(), asked.end(), rng);
    for (int i : asked)
      turn("\nWhat is the code for " + who[static_cast<size_t>(i)] + "? The code for " + who[static_cast<size_t>(i)] +
               " is",
           {codes[static_cast<size_t>(i)]}, 10, true);
  } else if (task == "niah_multikey_2") {
    // The haystack is made of needles: as many distinct facts as fit, the rest plain text.
    const auto who = sample(rng, names(), kNameCount);
    std::vector<std::string> codes;
    int used = 0;
    for (const std::string& n : who) {
      codes.push_back(number(rng, 4 + static_cast<int>(rng() % 3)));
      auto f = enc(" The code for " + n + " is " + codes.back() + ". ");
      if (used + static_cast<int>(f.size()) > (length * 3) / 4) {
        codes.pop_back();
        break;
      }
      used += static_cast<int>(f.size());
      inserts.push_back(std::move(f));
    }
    KV_CHECK(!codes.empty(), "RULER length {} is too short for niah_multikey_2", length);
    const size_t i = rng() % codes.size();
    turn("\nWhat is the code for " + who[i] + "? The code for " + who[i] + " is", {codes[i]}, 10, true);
  } else if (task == "niah_multivalue") {
    const std::string who = kNames[rng() % kNameCount];
    std::vector<std::string> codes;
    for (int i = 0; i < 4; ++i) {
      codes.push_back(number(rng, 5));
      inserts.push_back(enc(" The code for " + who + " is " + codes.back() + ". "));
    }
    // RULER asks a multi-value question in its own words, so it is not the single-key question.
    turn("\nWhat are all the codes for " + who + "? The codes for " + who + " are", codes, 32, false);
  } else if (task == "vt") {
    // Two-hop chains: the asked one and a distractor chain, their links interleaved in order.
    std::string letters(kVarLetters);
    std::shuffle(letters.begin(), letters.end(), rng);
    const std::string v0 = number(rng, 5), v1 = number(rng, 5);
    const char a = letters[0], b = letters[1], d = letters[2], e = letters[3], f = letters[4], g = letters[5];
    for (const std::string& s : {fmt::format(" VAR {} = {}. ", a, v0), fmt::format(" VAR {} = {}. ", e, v1),
                                 fmt::format(" VAR {} = VAR {}. ", b, a), fmt::format(" VAR {} = VAR {}. ", f, e),
                                 fmt::format(" VAR {} = VAR {}. ", d, b), fmt::format(" VAR {} = VAR {}. ", g, f)})
      inserts.push_back(enc(s));
    turn(fmt::format("\nWhat is the value of VAR {}? VAR {} =", d, d), {v0}, 10, true);
  } else if (task == "cwe") {
    // Common words: 5 words appear 4 times each, the others once, in a numbered list (RULER's cwe
    // scaled to a 1k-token model: 10 words x 30 at 4k tokens).
    filler = false;
    const auto w = sample(rng, words_, 5 + length);
    std::vector<std::string> list;
    for (int i = 0; i < 5; ++i)
      for (int r = 0; r < 4; ++r) list.push_back(w[static_cast<size_t>(i)]);
    const std::string q =
        "\nWhat are the 5 most common words in the list above? Answer: The top 5 words appearing most often in the "
        "list are:";
    const int q_tokens = static_cast<int>(enc(q).size());
    std::vector<std::string> answers(w.begin(), w.begin() + 5);
    size_t next = 5;
    std::string text;
    std::shuffle(list.begin(), list.end(), rng);
    for (;;) {
      std::string t;
      for (size_t i = 0; i < list.size(); ++i) t += fmt::format(" {}. {}", i + 1, list[i]);
      if (static_cast<int>(enc(t).size()) + 1 + q_tokens > length || next >= w.size()) break;
      text = t;
      list.insert(list.begin() + static_cast<long>(rng() % (list.size() + 1)), w[next++]);
    }
    KV_CHECK(!text.empty(), "RULER length {} is too short for cwe", length);
    body = enc(text);
    turn(q, answers, 40, false);
  } else {  // fwe: coded words with Zipf frequencies; the three most frequent
    filler = false;
    std::vector<std::string> vocab;
    std::set<std::string> distinct;
    while (vocab.size() < 60) {
      std::string s;
      for (int i = 0; i < 4; ++i) s += static_cast<char>('a' + rng() % 26);
      if (distinct.insert(s).second) vocab.push_back(s);
    }
    std::vector<double> weight;
    for (size_t i = 0; i < vocab.size(); ++i) weight.push_back(1.0 / ((i + 1.0) * (i + 1.0)));
    std::discrete_distribution<size_t> pick(weight.begin(), weight.end());
    const std::string q =
        "\nWhat are the three most frequently appeared coded words in the above text? Answer: According to the coded "
        "text above, the three most frequently appeared words are:";
    const int q_tokens = static_cast<int>(enc(q).size());
    std::map<std::string, int> count;
    std::string text;
    for (;;) {
      const std::string& w = vocab[pick(rng)];
      const std::string t = text + " " + w;
      if (static_cast<int>(enc(t).size()) + 1 + q_tokens > length) break;
      text = t;
      ++count[w];
    }
    std::vector<std::pair<int, std::string>> top;
    for (const auto& [w, n] : count) top.push_back({-n, w});
    std::sort(top.begin(), top.end());
    KV_CHECK(top.size() >= 3, "RULER length {} is too short for fwe", length);
    body = enc(text);
    turn(q, {top[0].second, top[1].second, top[2].second}, 24, false);
  }
  const int bos = tok_.bos() >= 0 ? 1 : 0;
  if (bos) c.context.push_back(tok_.bos());
  if (!filler) {
    c.context.insert(c.context.end(), body.begin(), body.end());
    return c;
  }
  int fixed = static_cast<int>(c.turns[0].question.size());
  for (const auto& x : inserts) fixed += static_cast<int>(x.size());
  const int n_fill = length - bos - fixed;
  KV_CHECK(n_fill >= 16, "RULER length {} is too short for {}", length, task);
  const std::vector<int32_t>& src = grass ? grass_ : essay_;
  KV_CHECK(static_cast<size_t>(n_fill) + 64 <= src.size(), "RULER length {} needs more filler than the haystack has",
           length);
  const size_t start = grass ? rng() % 40 : rng() % std::min<size_t>(2000, src.size() - static_cast<size_t>(n_fill));
  const std::vector<int32_t> fill(src.begin() + static_cast<long>(start),
                                  src.begin() + static_cast<long>(start) + n_fill);
  std::vector<int> cuts;
  for (size_t i = 0; i < inserts.size(); ++i) {
    int at = static_cast<int>(static_cast<double>(rng() % 1000) / 1000.0 * n_fill);
    for (int back = 0; back < 64 && at - back > 0; ++back) {
      const std::string piece = tok_.decode({fill[static_cast<size_t>(at - back - 1)]});
      if (!piece.empty() && piece.back() == '.') {
        at -= back;
        break;
      }
    }
    cuts.push_back(at);
  }
  std::sort(cuts.begin(), cuts.end());
  int prev = 0;
  for (size_t i = 0; i < inserts.size(); ++i) {
    c.context.insert(c.context.end(), fill.begin() + prev, fill.begin() + cuts[i]);
    c.context.insert(c.context.end(), inserts[i].begin(), inserts[i].end());
    prev = cuts[i];
  }
  c.context.insert(c.context.end(), fill.begin() + prev, fill.end());
  return c;
}

RulerOutcome run_ruler_case(Engine& engine, const RulerCase& c, std::shared_ptr<const KvPolicy> policy,
                            bool query_agnostic) {
  const int V = engine.model().config().n_vocab;
  const Tokenizer& tok = engine.model().tokenizer();
  KV_CHECK(!c.turns.empty(), "RULER case without a question");
  KV_CHECK(c.total_tokens() <= engine.ctx(), "RULER case of {} tokens exceeds the context {}", c.total_tokens(),
           engine.ctx());
  RulerOutcome out;
  const SeqId seq = engine.new_sequence();
  try {
    const std::vector<int32_t>& q0 = c.turns[0].question;
    std::vector<int32_t> first = c.context;
    if (!query_agnostic) first.insert(first.end(), q0.begin(), q0.end());
    auto comp = attach_policy(engine, seq, policy, static_cast<int>(first.size()));
    std::vector<float> logits = engine.prefill(seq, first);
    out.hot_bytes = engine.kv().bytes_sequence(seq) + (comp ? comp->report().gate_cache_bytes : 0);
    std::vector<int32_t> carry;  // the previous answer's last token, not yet in the cache
    for (size_t t = 0; t < c.turns.size(); ++t) {
      const RulerTurn& turn = c.turns[t];
      if (t > 0 || query_agnostic) {
        carry.insert(carry.end(), turn.question.begin(), turn.question.end());
        logits = engine.prefill(seq, carry);
      }
      carry.clear();
      std::vector<int32_t> gen;
      std::string text;
      for (int i = 0; i < turn.max_tokens; ++i) {
        const int32_t next = argmax(logits.data(), V);
        if (tok.is_end_of_generation(next)) break;
        gen.push_back(next);
        text = tok.decode(gen);
        const bool newline = text.find('\n') != std::string::npos;
        const bool number_done = turn.numeric && text.size() >= 2 && text.back() == '.' &&
                                 std::isdigit(static_cast<unsigned char>(text[text.size() - 2]));
        if (number_done) carry = {next};
        if (newline || number_done || engine.kv().next_position(seq) >= engine.ctx()) break;
        logits = engine.decode(seq, next);
      }
      // The answer ends at a line break (the next line is the model's own continuation).
      const std::string answer = lower(text.substr(0, text.find('\n')));
      for (const std::string& a : turn.answers) out.found += answer.find(lower(a)) != std::string::npos;
      out.answers += static_cast<int>(turn.answers.size());
      out.output += (t ? " | " : "") + text;
    }
    if (comp) out.compress_seconds = comp->report().prefill_seconds + comp->report().decode_seconds;
  } catch (...) {
    engine.free_sequence(seq);
    throw;
  }
  engine.free_sequence(seq);
  out.score = out.answers > 0 ? static_cast<double>(out.found) / out.answers : 0.0;
  return out;
}

}  // namespace kvwise
