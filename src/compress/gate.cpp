#include "compress/gate.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <mutex>

#include "base/data_dir.h"
#include "base/error.h"
#include "model/gguf.h"

namespace kvwise {

namespace {

std::vector<float> read_f32(const GgufFile& f, const std::string& name, std::vector<int64_t> dims) {
  const GgufTensorInfo* t = f.find_tensor(name);
  KV_CHECK(t != nullptr, "{}: gate tensor {} is missing", f.path(), name);
  KV_CHECK(t->type == DType::F32, "{}: gate tensor {} must be F32", f.path(), name);
  KV_CHECK(t->dims == dims, "{}: gate tensor {} has shape [{}], expected [{}]", f.path(), name,
           fmt::join(t->dims, ", "), fmt::join(dims, ", "));
  const float* p = reinterpret_cast<const float*>(f.tensor_data(*t));
  std::vector<float> out(p, p + t->elements());
  for (float v : out) KV_CHECK(std::isfinite(v), "{}: gate tensor {} holds a non-finite value", f.path(), name);
  return out;
}

int get_dim(const GgufFile& f, const std::string& key, int lo, int hi) {
  const auto v = f.get_int(key);
  KV_CHECK(v.has_value(), "{}: not a kvwise gate file (no {})", f.path(), key);
  KV_CHECK(*v >= lo && *v <= hi, "{}: {} = {} is out of range [{}, {}]", f.path(), key, *v, lo, hi);
  return static_cast<int>(*v);
}

// Y[t][o] = sum_i W[o][i] * X[t][i] for T rows (row-major, W is out x in): one BLAS call per chunk,
// not a scalar product per token; the gate runs on every prefill chunk and decode step.
void project(const std::vector<float>& w, const float* x, int T, int in, int out, float* y, int y_stride) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, out, in, 1.0f, x, in, w.data(), in, 0.0f, y, y_stride);
}

}  // namespace

std::string GateModel::default_path(const std::string& model_path) {
  const std::string ext = ".gguf";
  const bool has_ext =
      model_path.size() > ext.size() && model_path.compare(model_path.size() - ext.size(), ext.size(), ext) == 0;
  const std::string side = (has_ext ? model_path.substr(0, model_path.size() - ext.size()) : model_path) + ".gate.gguf";
  // A side file wins; else a gate that ships with kvwise for a model of that file name (the models'
  // own directories, like ../shared, are not ours to write into).
  std::error_code ec;
  if (std::filesystem::exists(side, ec)) return side;
  const std::string bundled = bundled_file(std::filesystem::path(side).filename().string());
  if (std::filesystem::exists(bundled, ec)) return bundled;
  return side;
}

std::shared_ptr<const GateModel> GateModel::load(const std::string& path, const ModelConfig& c) {
  auto f = GgufFile::open(path);
  auto g = std::make_shared<GateModel>();
  g->path_ = path;
  g->n_layers_ = get_dim(*f, "kvwise.gate.layers", 1, 1024);
  g->dim_ = get_dim(*f, "kvwise.gate.dim", 1, 1 << 16);
  g->n_kv_ = get_dim(*f, "kvwise.gate.kv_heads", 1, 1024);
  const std::string kind = f->get_string("kvwise.gate.kind").value_or("attention");
  KV_CHECK(kind == "attention" || kind == "mlp", "{}: unknown gate kind \"{}\" (attention, mlp)", path, kind);
  g->kind_ = kind == "mlp" ? Kind::Mlp : Kind::Attention;
  g->heads_ = g->kind_ == Kind::Mlp ? 0 : get_dim(*f, "kvwise.gate.heads", 1, 64);
  g->head_dim_ = get_dim(*f, "kvwise.gate.head_dim", 1, 256);
  g->trained_rate_ = f->get_float("kvwise.gate.target_evict").value_or(0.5);
  g->check_shape(c);
  const int64_t w = g->kind_ == Kind::Mlp ? g->head_dim_ : int64_t{g->heads_} * g->head_dim_;
  for (int l = 0; l < g->n_layers_; ++l) {
    const std::string p = "gate." + std::to_string(l) + ".";
    Layer L;
    if (g->kind_ == Kind::Mlp) {
      L.w1 = read_f32(*f, p + "w1", {g->dim_, w});
      L.b1 = read_f32(*f, p + "b1", {w});
    } else {
      L.wq = read_f32(*f, p + "wq", {g->dim_, w});
      L.wk = read_f32(*f, p + "wk", {g->dim_, w});
      L.wv = read_f32(*f, p + "wv", {g->dim_, w});
    }
    L.wo = read_f32(*f, p + "wo", {w, g->n_kv_});
    L.bo = read_f32(*f, p + "bo", {g->n_kv_});
    g->layers_.push_back(std::move(L));
  }
  const std::vector<float> q = read_f32(*f, "gate.quantiles", {101, int64_t{g->n_kv_} * g->n_layers_});
  for (int i = 0; i < g->n_layers_ * g->n_kv_; ++i) {
    std::vector<float> row(q.begin() + i * 101, q.begin() + (i + 1) * 101);
    KV_CHECK(std::is_sorted(row.begin(), row.end()), "{}: gate.quantiles row {} is not sorted", path, i);
    g->quantiles_.push_back(std::move(row));
  }
  return g;
}

std::shared_ptr<const GateModel> GateModel::load_cached(const std::string& path, const ModelConfig& c) {
  static std::mutex mu;
  static std::map<std::string, std::shared_ptr<const GateModel>> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(path);
  if (it != cache.end()) {
    it->second->check_shape(c);
    return it->second;
  }
  auto g = load(path, c);
  cache[path] = g;
  return g;
}

void GateModel::check_shape(const ModelConfig& c) const {
  KV_CHECK(n_layers_ == c.n_layers && dim_ == c.dim && n_kv_ == c.n_kv_heads,
           "{}: the gate was trained for {} layers, dim {}, {} KV heads; the model has {}, {}, {}", path_, n_layers_,
           dim_, n_kv_, c.n_layers, c.dim, c.n_kv_heads);
}

float GateModel::threshold(int layer, int head, double rate) const {
  if (rate < 0) return 0.5f;
  const std::vector<float>& q = quantiles_[static_cast<size_t>(layer * n_kv_ + head)];
  if (rate <= 0) return -1.0f;  // scores are > 0: nothing falls below
  if (rate >= 1) return 2.0f;   // scores are < 1: everything falls below
  const double at = rate * 100.0;
  const int i = std::min(99, static_cast<int>(at));
  const double f = at - i;
  return static_cast<float>(q[static_cast<size_t>(i)] * (1 - f) + q[static_cast<size_t>(i + 1)] * f);
}

GateState::GateState(std::shared_ptr<const GateModel> gate)
    : gate_(std::move(gate)), k_(static_cast<size_t>(gate_->n_layers())), v_(static_cast<size_t>(gate_->n_layers())) {}

namespace {

// x / rms(x), without a weight (the gate learns its own scale).
void rms_normalize(const float* x, int D, float* out) {
  double ss = 0;
  for (int i = 0; i < D; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float inv = static_cast<float>(1.0 / std::sqrt(ss / D + 1e-5));
  for (int i = 0; i < D; ++i) out[i] = x[i] * inv;
}

float sigmoid(float v) {
  return 1.0f / (1.0f + std::exp(-v));
}

// The gate's head for T tokens, shared by both kinds: s[t][k] = sigmoid(Wo h[t] + bo)[k].
void keep_scores(const GateModel::Layer& L, const float* h, int T, int in, int KV, float* s) {
  project(L.wo, h, T, in, KV, s, KV);
  for (int i = 0; i < T * KV; ++i) s[i] = sigmoid(s[i] + L.bo[static_cast<size_t>(i % KV)]);
}

}  // namespace

void GateState::step(int layer, const float* x, int64_t stride, int T, float* s) {
  const GateModel& g = *gate_;
  const GateModel::Layer& L = g.layer(layer);
  if (g.kind() == GateModel::Kind::Mlp) {
    const int D = g.dim(), Hd = g.head_dim(), KV = g.n_kv();
    std::vector<float> xn(static_cast<size_t>(T) * D), h(static_cast<size_t>(T) * Hd);
    for (int t = 0; t < T; ++t) rms_normalize(x + t * stride, D, xn.data() + static_cast<size_t>(t) * D);
    project(L.w1, xn.data(), T, D, Hd, h.data(), Hd);
    for (int t = 0; t < T; ++t)
      for (int i = 0; i < Hd; ++i) {
        float& v = h[static_cast<size_t>(t) * Hd + i];
        v += L.b1[static_cast<size_t>(i)];
        v *= sigmoid(v);  // silu
      }
    keep_scores(L, h.data(), T, Hd, KV, s);
    return;
  }
  const int D = g.dim(), H = g.heads(), d = g.head_dim(), W = H * d, KV = g.n_kv();
  std::vector<float>& K = k_[static_cast<size_t>(layer)];
  std::vector<float>& V = v_[static_cast<size_t>(layer)];
  const int n0 = static_cast<int>(K.size() / static_cast<size_t>(W));
  std::vector<float> xn(static_cast<size_t>(T) * D), q(static_cast<size_t>(T) * W);
  K.resize(static_cast<size_t>(n0 + T) * W);
  V.resize(static_cast<size_t>(n0 + T) * W);
  for (int t = 0; t < T; ++t) rms_normalize(x + t * stride, D, xn.data() + static_cast<size_t>(t) * D);
  project(L.wq, xn.data(), T, D, W, q.data(), W);
  project(L.wk, xn.data(), T, D, W, K.data() + static_cast<size_t>(n0) * W, W);
  project(L.wv, xn.data(), T, D, W, V.data() + static_cast<size_t>(n0) * W, W);
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  std::vector<float> att(static_cast<size_t>(n0 + T)), o(static_cast<size_t>(T) * W);
  for (int t = 0; t < T; ++t) {
    const int n = n0 + t + 1;  // causal: itself and every earlier token
    for (int h = 0; h < H; ++h) {
      const float* qr = q.data() + static_cast<size_t>(t) * W + h * d;
      float mx = -INFINITY;
      for (int j = 0; j < n; ++j) {
        const float* kr = K.data() + static_cast<size_t>(j) * W + h * d;
        float a = 0;
        for (int c = 0; c < d; ++c) a += qr[c] * kr[c];
        att[static_cast<size_t>(j)] = a * scale;
        mx = std::max(mx, a * scale);
      }
      float sum = 0;
      for (int j = 0; j < n; ++j) sum += att[static_cast<size_t>(j)] = std::exp(att[static_cast<size_t>(j)] - mx);
      float* out = o.data() + static_cast<size_t>(t) * W + h * d;
      std::fill(out, out + d, 0.0f);
      for (int j = 0; j < n; ++j) {
        const float w = att[static_cast<size_t>(j)] / sum;
        const float* vr = V.data() + static_cast<size_t>(j) * W + h * d;
        for (int c = 0; c < d; ++c) out[c] += w * vr[c];
      }
    }
  }
  keep_scores(L, o.data(), T, W, KV, s);
}

size_t GateState::bytes() const {
  size_t b = 0;
  for (size_t l = 0; l < k_.size(); ++l) b += (k_[l].size() + v_[l].size()) * sizeof(float);
  return b;
}

}  // namespace kvwise
