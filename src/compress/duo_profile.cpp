#include "compress/duo_profile.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "compress/stages.h"

namespace kvwise {

void DuoProfile::save(const std::string& path) const {
  nlohmann::json j;
  j["format"] = "kvwise-duo-profile-1";
  j["model"] = model;
  j["n_layers"] = n_layers;
  j["n_kv_heads"] = n_kv_heads;
  j["sinks"] = sinks;
  j["recent"] = recent;
  j["queries"] = queries;
  j["rows"] = rows;
  j["scores"] = scores;
  std::ofstream f(path);
  KV_CHECK(f.good(), "cannot write {}", path);
  f << j.dump(1) << "\n";
  KV_CHECK(f.good(), "error writing {}", path);
}

DuoProfile DuoProfile::load(const std::string& path) {
  std::ifstream f(path);
  KV_CHECK(f.good(), "cannot read the DuoAttention profile {}", path);
  DuoProfile p;
  try {
    const nlohmann::json j = nlohmann::json::parse(f);
    KV_CHECK(j.value("format", "") == "kvwise-duo-profile-1",
             "{} is not a DuoAttention profile (kvwise profile "
             "--method duoattention writes one)",
             path);
    p.model = j.value("model", "");
    p.n_layers = j.at("n_layers").get<int>();
    p.n_kv_heads = j.at("n_kv_heads").get<int>();
    p.sinks = j.at("sinks").get<int>();
    p.recent = j.at("recent").get<int>();
    p.queries = j.value("queries", 0);
    p.rows = j.value("rows", 0L);
    p.scores = j.at("scores").get<std::vector<std::vector<double>>>();
  } catch (const nlohmann::json::exception& e) {
    fail("the DuoAttention profile {} is malformed: {}", path, e.what());
  }
  KV_CHECK(p.n_layers > 0 && p.n_kv_heads > 0 && static_cast<int>(p.scores.size()) == p.n_layers,
           "the DuoAttention profile {} has {} layer rows for {} layers", path, p.scores.size(), p.n_layers);
  for (const auto& row : p.scores)
    KV_CHECK(static_cast<int>(row.size()) == p.n_kv_heads, "the DuoAttention profile {} has a row of {} heads, not {}",
             path, row.size(), p.n_kv_heads);
  KV_CHECK(p.sinks >= 0 && p.recent >= 1, "the DuoAttention profile {} has sinks {} and recent {}", path, p.sinks,
           p.recent);
  return p;
}

DuoProfiler::DuoProfiler(const ModelConfig& config, int sinks, int recent, int queries)
    : c_(config), sinks_(sinks), recent_(recent), queries_(queries) {
  KV_CHECK(sinks >= 0 && recent >= 1 && queries >= 1, "duo profile: sinks {} recent {} queries {}", sinks, recent,
           queries);
  sum_.assign(static_cast<size_t>(c_.n_layers * c_.n_kv_heads), 0.0);
  count_.assign(sum_.size(), 0);
}

void DuoProfiler::after_attention(KvStore& kv, SeqId seq, const Attention& a) {
  const int d = c_.head_dim, G = c_.n_heads / c_.n_kv_heads;
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  const int from = end_ > 0 ? 0 : std::max(0, a.T - a.speculative - queries_);
  std::vector<double> p, o_full(static_cast<size_t>(d)), o_s(static_cast<size_t>(d));
  for (int h = 0; h < c_.n_kv_heads; ++h) {
    const HeadKv hk(kv, seq, a.layer, h);
    const std::span<const float> K = hk.keys(), V = hk.values();
    const int len = hk.len();
    for (int t = from; t < a.T - a.speculative; ++t) {
      if (end_ > 0 && (a.pos[t] < end_ - queries_ || a.pos[t] >= end_)) continue;
      // Slots visible to this query (positions <= its own; the prompt is uncompressed, slot = position
      // offset from the first slot).
      int vis = 0;
      while (vis < len && kv.slot_position(seq, a.layer, h, vis) <= a.pos[t]) ++vis;
      if (vis <= sinks_ + recent_) continue;  // streaming sees everything: no deviation to learn from
      for (int g = 0; g < G; ++g) {
        const float* q = a.q + t * a.stride + (h * G + g) * d;
        p.assign(static_cast<size_t>(vis), 0.0);
        double m = -1e300;
        for (int j = 0; j < vis; ++j) {
          double s = 0;
          for (int i = 0; i < d; ++i) s += static_cast<double>(q[i]) * K[static_cast<size_t>(j * d + i)];
          p[static_cast<size_t>(j)] = s * scale;
          m = std::max(m, p[static_cast<size_t>(j)]);
        }
        double z_full = 0, z_s = 0;
        std::fill(o_full.begin(), o_full.end(), 0.0);
        std::fill(o_s.begin(), o_s.end(), 0.0);
        for (int j = 0; j < vis; ++j) {
          const double e = std::exp(p[static_cast<size_t>(j)] - m);
          const bool streamed = j < sinks_ || j >= vis - recent_;
          z_full += e;
          if (streamed) z_s += e;
          for (int i = 0; i < d; ++i) {
            const double v = V[static_cast<size_t>(j * d + i)];
            o_full[static_cast<size_t>(i)] += e * v;
            if (streamed) o_s[static_cast<size_t>(i)] += e * v;
          }
        }
        double num = 0, den = 0;
        for (int i = 0; i < d; ++i) {
          const double f = o_full[static_cast<size_t>(i)] / z_full, s = o_s[static_cast<size_t>(i)] / z_s;
          num += (f - s) * (f - s);
          den += f * f;
        }
        sum_[static_cast<size_t>(a.layer * c_.n_kv_heads + h)] += den > 0 ? num / den : 0.0;
        ++count_[static_cast<size_t>(a.layer * c_.n_kv_heads + h)];
      }
    }
  }
}

DuoProfile DuoProfiler::profile(const std::string& model_name) const {
  DuoProfile p;
  p.model = model_name;
  p.n_layers = c_.n_layers;
  p.n_kv_heads = c_.n_kv_heads;
  p.sinks = sinks_;
  p.recent = recent_;
  p.queries = queries_;
  p.scores.assign(static_cast<size_t>(c_.n_layers), std::vector<double>(static_cast<size_t>(c_.n_kv_heads), 0.0));
  for (int l = 0; l < c_.n_layers; ++l)
    for (int h = 0; h < c_.n_kv_heads; ++h) {
      const size_t i = static_cast<size_t>(l * c_.n_kv_heads + h);
      p.scores[static_cast<size_t>(l)][static_cast<size_t>(h)] =
          count_[i] ? sum_[i] / static_cast<double>(count_[i]) : 0.0;
      p.rows += count_[i];
    }
  p.rows /= std::max(1, c_.n_layers * c_.n_heads);
  return p;
}

}  // namespace kvwise
