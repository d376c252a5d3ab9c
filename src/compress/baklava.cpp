#include "compress/baklava.h"

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/error.h"

namespace kvwise {

namespace {
double cosine(const float* a, const float* b, int64_t n) {
  double ab = 0, aa = 0, bb = 0;
  for (int64_t i = 0; i < n; ++i) {
    ab += static_cast<double>(a[i]) * b[i];
    aa += static_cast<double>(a[i]) * a[i];
    bb += static_cast<double>(b[i]) * b[i];
  }
  return aa > 0 && bb > 0 ? ab / std::sqrt(aa * bb) : 1.0;
}
}  // namespace

void BaklavaProfile::set_theta(double t) {
  theta = t;
  weights.assign(static_cast<size_t>(n_layers), std::vector<double>(static_cast<size_t>(n_kv_heads), 1.0));
  double sum = 0;
  for (int l = 0; l < n_layers; ++l)
    for (int h = 0; h < n_kv_heads; ++h) {
      const double imp = std::max(1e-6, head_importance[static_cast<size_t>(l)][static_cast<size_t>(h)]) *
                         std::max(1e-6, layer_importance[static_cast<size_t>(l)]);
      sum += weights[static_cast<size_t>(l)][static_cast<size_t>(h)] = std::pow(imp, t);
    }
  const double mean = sum / std::max(1, n_layers * n_kv_heads);
  for (auto& row : weights)
    for (double& w : row) w /= mean;
}

void BaklavaProfile::save(const std::string& path) const {
  nlohmann::json j;
  j["format"] = "kvwise-baklava-profile-1";
  j["model"] = model;
  j["n_layers"] = n_layers;
  j["n_kv_heads"] = n_kv_heads;
  j["theta"] = theta;
  j["tokens"] = tokens;
  j["head_importance"] = head_importance;
  j["layer_importance"] = layer_importance;
  j["weights"] = weights;
  std::ofstream f(path);
  KV_CHECK(f.good(), "cannot write {}", path);
  f << j.dump(1) << "\n";
  KV_CHECK(f.good(), "error writing {}", path);
}

BaklavaProfile BaklavaProfile::load(const std::string& path) {
  std::ifstream f(path);
  KV_CHECK(f.good(), "cannot read the BaKlaVa profile {}", path);
  BaklavaProfile p;
  try {
    const nlohmann::json j = nlohmann::json::parse(f);
    KV_CHECK(j.value("format", "") == "kvwise-baklava-profile-1", "{} is not a kvwise BaKlaVa profile", path);
    p.model = j.at("model").get<std::string>();
    p.n_layers = j.at("n_layers").get<int>();
    p.n_kv_heads = j.at("n_kv_heads").get<int>();
    p.theta = j.at("theta").get<double>();
    p.tokens = j.at("tokens").get<int>();
    p.head_importance = j.at("head_importance").get<std::vector<std::vector<double>>>();
    p.layer_importance = j.at("layer_importance").get<std::vector<double>>();
    p.weights = j.at("weights").get<std::vector<std::vector<double>>>();
  } catch (const nlohmann::json::exception& e) {
    fail("BaKlaVa profile {}: {}", path, e.what());
  }
  KV_CHECK(p.n_layers > 0 && p.n_kv_heads > 0 && static_cast<int>(p.weights.size()) == p.n_layers &&
               static_cast<int>(p.head_importance.size()) == p.n_layers &&
               static_cast<int>(p.layer_importance.size()) == p.n_layers,
           "BaKlaVa profile {}: inconsistent shapes", path);
  for (size_t l = 0; l < p.weights.size(); ++l) {
    KV_CHECK(static_cast<int>(p.weights[l].size()) == p.n_kv_heads &&
                 static_cast<int>(p.head_importance[l].size()) == p.n_kv_heads,
             "BaKlaVa profile {}: layer {} does not have {} heads", path, l, p.n_kv_heads);
    for (double w : p.weights[l]) KV_CHECK(std::isfinite(w) && w >= 0, "BaKlaVa profile {}: bad weight {}", path, w);
  }
  return p;
}

BaklavaProfiler::BaklavaProfiler(const ModelConfig& config)
    : c_(config),
      head_cos_sum_(static_cast<size_t>(config.n_layers * config.n_kv_heads), 0.0),
      layer_cos_sum_(static_cast<size_t>(config.n_layers), 0.0) {}

void BaklavaProfiler::after_attention(KvStore& kv, SeqId seq, const Attention& a) {
  const int G = c_.n_heads / c_.n_kv_heads, hd = c_.head_dim;
  std::vector<float> v(static_cast<size_t>(hd));
  for (int h = 0; h < c_.n_kv_heads; ++h)
    for (int t = 0; t < a.T; ++t) {
      // During an uncompressed prefill slot i holds position i.
      kv.read_slot(seq, a.layer, h, a.pos[t], nullptr, v.data());
      for (int g = 0; g < G; ++g)
        head_cos_sum_[static_cast<size_t>(a.layer * c_.n_kv_heads + h)] +=
            cosine(v.data(), a.out + t * a.stride + (h * G + g) * hd, hd) / G;
    }
  if (a.layer == 0) head_count_ += a.T;
}

void BaklavaProfiler::on_hidden(SeqId, int layer, const float* x, int64_t dim, int T) {
  const size_t n = static_cast<size_t>(dim) * static_cast<size_t>(T);
  if (layer > 0 && prev_hidden_.size() == n) {
    for (int t = 0; t < T; ++t)
      layer_cos_sum_[static_cast<size_t>(layer - 1)] += cosine(prev_hidden_.data() + t * dim, x + t * dim, dim);
    if (layer == 1) layer_rows_ += T;
  }
  prev_hidden_.assign(x, x + n);
}

BaklavaProfile BaklavaProfiler::profile(const std::string& model_name, double theta) const {
  KV_CHECK(head_count_ > 0 && layer_rows_ > 0, "BaKlaVa profiler saw no tokens");
  BaklavaProfile p;
  p.model = model_name;
  p.n_layers = c_.n_layers;
  p.n_kv_heads = c_.n_kv_heads;
  p.tokens = static_cast<int>(head_count_);
  p.head_importance.assign(static_cast<size_t>(c_.n_layers), std::vector<double>(static_cast<size_t>(c_.n_kv_heads)));
  for (int l = 0; l < c_.n_layers; ++l) {
    for (int h = 0; h < c_.n_kv_heads; ++h)
      p.head_importance[static_cast<size_t>(l)][static_cast<size_t>(h)] =
          1.0 - head_cos_sum_[static_cast<size_t>(l * c_.n_kv_heads + h)] / static_cast<double>(head_count_);
    p.layer_importance.push_back(1.0 - layer_cos_sum_[static_cast<size_t>(l)] / static_cast<double>(layer_rows_));
  }
  p.set_theta(theta);
  return p;
}

}  // namespace kvwise
