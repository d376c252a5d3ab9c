#include <algorithm>
#include <cmath>

#include "base/error.h"
#include "compress/budget.h"
#include "compress/components.h"
#include "compress/select.h"

namespace kvwise {

namespace {

std::vector<int> capped_uniform(int n, int mean, int cap) {
  return std::vector<int>(static_cast<size_t>(n), std::min(mean, cap));
}

class UniformLayers : public LayerBudgeter {
 public:
  std::string name() const override { return "uniform"; }
  std::vector<int> budgets(const LayerBudgetInput& in) const override {
    return capped_uniform(in.n_layers, in.mean, in.candidates);
  }
};

class PyramidLayers : public LayerBudgeter {
 public:
  explicit PyramidLayers(double beta) : beta_(beta) {}
  std::string name() const override { return "pyramid"; }
  std::vector<int> budgets(const LayerBudgetInput& in) const override {
    return pyramid_budgets(in.n_layers, in.mean, in.candidates, beta_);
  }

 private:
  double beta_;
};

class CakeLayers : public LayerBudgeter {
 public:
  CakeLayers(double tau1, double tau2, bool cascade) : tau1_(tau1), tau2_(tau2), cascade_(cascade) {}
  std::string name() const override { return "cake"; }
  bool adaptive() const override { return true; }
  bool cascade() const override { return cascade_; }
  void add_taps(TapConfig& cfg) const override { cfg.window_entropy = true; }
  // P = H^(1/tau1) * V^(1/tau2): H sums the window rows' entropies over the prefix columns, V sums the
  // per-column variance of the window rows (unbiased), over every query head of the layer.
  double preference(const KvStore& kv, SeqId seq, int layer, int window) const override {
    const int H = kv.layout().n_heads;
    const int n = kv.head_len(seq, layer, 0);
    const int prefix = std::max(0, n - window);
    double ent = 0, var = 0;
    for (int h = 0; h < H; ++h) {
      const HeadTaps& t = kv.taps(seq, layer, h);
      ent += t.window_entropy;
      if (window < 2) continue;
      for (int j = 0; j < prefix && j < static_cast<int>(t.window_sum.size()); ++j) {
        const double s = t.window_sum[static_cast<size_t>(j)], ss = t.window_sumsq[static_cast<size_t>(j)];
        var += std::max(0.0, (ss - s * s / window) / (window - 1));
      }
    }
    return std::pow(std::max(ent, 1e-30), 1.0 / tau1_) * std::pow(std::max(var, 1e-30), 1.0 / tau2_);
  }
  std::vector<int> budgets(const LayerBudgetInput& in) const override {
    const std::vector<int> caps(in.preference.size(), in.candidates);
    return split_proportional(static_cast<long>(in.n_layers) * in.mean, in.preference, caps);
  }

 private:
  double tau1_, tau2_;
  bool cascade_;
};

class WeightedLayers : public LayerBudgeter {
 public:
  WeightedLayers(std::vector<double> w, std::string name) : w_(std::move(w)), name_(std::move(name)) {}
  std::string name() const override { return name_; }
  std::vector<int> budgets(const LayerBudgetInput& in) const override {
    KV_CHECK(static_cast<int>(w_.size()) == in.n_layers, "{}: profile has {} layers, the model {}", name_, w_.size(),
             in.n_layers);
    const std::vector<int> caps(w_.size(), in.candidates);
    return split_proportional(static_cast<long>(in.n_layers) * in.mean, w_, caps);
  }

 private:
  std::vector<double> w_;
  std::string name_;
};

class UniformHeads : public HeadBudgeter {
 public:
  std::string name() const override { return "uniform"; }
  std::vector<int> split(int, int mean, std::span<const std::vector<float>> scores) const override {
    std::vector<int> out;
    for (const auto& s : scores) out.push_back(std::min(mean, static_cast<int>(s.size())));
    return out;
  }
};

class AdaKvHeads : public HeadBudgeter {
 public:
  explicit AdaKvHeads(double alpha) : alpha_(alpha) {}
  std::string name() const override { return "adakv"; }
  std::vector<int> split(int, int mean, std::span<const std::vector<float>> scores) const override {
    return adakv_split(scores, mean, alpha_);
  }

 private:
  double alpha_;
};

class WeightedHeads : public HeadBudgeter {
 public:
  WeightedHeads(std::vector<std::vector<double>> w, std::string name) : w_(std::move(w)), name_(std::move(name)) {}
  std::string name() const override { return name_; }
  std::vector<int> split(int layer, int mean, std::span<const std::vector<float>> scores) const override {
    KV_CHECK(layer < static_cast<int>(w_.size()) && w_[static_cast<size_t>(layer)].size() == scores.size(),
             "{}: profile does not match the model's layers and KV heads", name_);
    std::vector<int> caps;
    for (const auto& s : scores) caps.push_back(static_cast<int>(s.size()));
    return split_proportional(static_cast<long>(scores.size()) * mean, w_[static_cast<size_t>(layer)], caps);
  }

 private:
  std::vector<std::vector<double>> w_;
  std::string name_;
};

}  // namespace

std::shared_ptr<LayerBudgeter> make_uniform_layers() {
  return std::make_shared<UniformLayers>();
}
std::shared_ptr<LayerBudgeter> make_pyramid_layers(double beta) {
  return std::make_shared<PyramidLayers>(beta);
}
std::shared_ptr<LayerBudgeter> make_cake_layers(double tau1, double tau2, bool cascade) {
  return std::make_shared<CakeLayers>(tau1, tau2, cascade);
}
std::shared_ptr<LayerBudgeter> make_weighted_layers(std::vector<double> layer_weights, std::string name) {
  return std::make_shared<WeightedLayers>(std::move(layer_weights), std::move(name));
}
std::shared_ptr<HeadBudgeter> make_uniform_heads() {
  return std::make_shared<UniformHeads>();
}
std::shared_ptr<HeadBudgeter> make_adakv_heads(double alpha) {
  return std::make_shared<AdaKvHeads>(alpha);
}
std::shared_ptr<HeadBudgeter> make_weighted_heads(std::vector<std::vector<double>> weights, std::string name) {
  return std::make_shared<WeightedHeads>(std::move(weights), std::move(name));
}

}  // namespace kvwise
