#include "model/weights.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "base/error.h"
#include "tensor/packed.h"
#include "tensor/quant.h"

namespace kvwise {

namespace {

struct Binder {
  const GgufFile& f;
  ModelWeights& w;

  const GgufTensorInfo& find(const std::string& name, std::vector<int64_t> dims) {
    const GgufTensorInfo* t = f.find_tensor(name);
    KV_CHECK(t != nullptr, "{}: missing required tensor '{}'", f.path(), name);
    KV_CHECK(t->dims == dims, "{}: tensor '{}' has shape {} but the config needs {}", f.path(), name,
             fmt::join(t->dims, "x"), fmt::join(dims, "x"));
    KV_CHECK(dtype_info(t->type).compute, "{}: tensor '{}' has type {}, which kvwise cannot compute with", f.path(),
             name, dtype_name(t->type));
    w.mapped_bytes += t->bytes;
    w.parameters += t->elements();
    return *t;
  }
  WeightView matrix(const std::string& name, int64_t cols, int64_t rows) {
    const GgufTensorInfo& t = find(name, {cols, rows});
    return WeightView{t.type, f.tensor_data(t), rows, cols, row_bytes(t.type, cols)};
  }
  const float* vec(const std::string& name, int64_t n, bool optional = false) {
    if (optional && !f.find_tensor(name)) return nullptr;
    const GgufTensorInfo& t = find(name, {n});
    if (t.type == DType::F32) return reinterpret_cast<const float*>(f.tensor_data(t));
    w.owned.emplace_back(static_cast<size_t>(n));
    dequantize_row(t.type, f.tensor_data(t), w.owned.back().data(), n);
    return w.owned.back().data();
  }
};

bool repack_enabled() {
  const char* v = std::getenv("KVWISE_REPACK");
  return v == nullptr || std::strcmp(v, "0") != 0;
}

// Repacks w into owned memory and gives the mapped pages of its source back to the page cache: the
// packed copy is what products read, and lookups of a tied embedding fault in only their rows.
void repack(ModelWeights& mw, WeightView& w) {
  if (!packable(w.type, w.rows, w.cols)) return;
  const size_t bytes = static_cast<size_t>(w.rows / kPackRows) * packed_group_bytes(w.type, w.cols);
  mw.packed.emplace_back(bytes);
  pack_rows(w.type, w.data, w.row_bytes, w.rows, w.cols, mw.packed.back().data());
  w.packed = mw.packed.back().data();
  mw.packed_bytes += bytes;
  const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const auto begin = (reinterpret_cast<uintptr_t>(w.data) + page - 1) / page * page;
  const auto end = (reinterpret_cast<uintptr_t>(w.data) + w.row_bytes * static_cast<size_t>(w.rows)) / page * page;
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);  // advisory only
}

}  // namespace

ModelWeights bind_weights(const GgufFile& f, const ModelConfig& c) {
  ModelWeights w;
  w.owned.reserve(static_cast<size_t>(8 * c.n_layers + 8));  // pointers into it must stay valid
  Binder b{f, w};
  const int64_t q_dim = static_cast<int64_t>(c.n_heads) * c.head_dim;
  const int64_t kv_dim = static_cast<int64_t>(c.n_kv_heads) * c.head_dim;
  w.tok_embd = b.matrix("token_embd.weight", c.dim, c.n_vocab);
  w.output_norm = b.vec("output_norm.weight", c.dim);
  if (f.find_tensor("output.weight")) {
    w.output = b.matrix("output.weight", c.dim, c.n_vocab);
  } else {
    w.output = w.tok_embd;
    w.tied_output = true;
  }
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    LayerWeights L;
    L.attn_norm = b.vec(p + "attn_norm.weight", c.dim);
    L.wq = b.matrix(p + "attn_q.weight", c.dim, q_dim);
    L.wk = b.matrix(p + "attn_k.weight", c.dim, kv_dim);
    L.wv = b.matrix(p + "attn_v.weight", c.dim, kv_dim);
    L.wo = b.matrix(p + "attn_output.weight", q_dim, c.dim);
    L.bq = b.vec(p + "attn_q.bias", q_dim, !c.qkv_bias);
    L.bk = b.vec(p + "attn_k.bias", kv_dim, !c.qkv_bias);
    L.bv = b.vec(p + "attn_v.bias", kv_dim, !c.qkv_bias);
    L.ffn_norm = b.vec(p + "ffn_norm.weight", c.dim);
    L.w_gate = b.matrix(p + "ffn_gate.weight", c.dim, c.ffn_dim);
    L.w_up = b.matrix(p + "ffn_up.weight", c.dim, c.ffn_dim);
    L.w_down = b.matrix(p + "ffn_down.weight", c.ffn_dim, c.dim);
    w.layers.push_back(L);
  }
  for (const LayerWeights& L : w.layers)
    for (const WeightView* m : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down})
      w.bytes_per_token += m->row_bytes * static_cast<size_t>(m->rows);
  w.bytes_per_token += w.output.row_bytes * static_cast<size_t>(w.output.rows);
  if (repack_enabled()) {
    w.packed.reserve(static_cast<size_t>(7 * c.n_layers + 1));  // WeightView::packed points into it
    for (LayerWeights& L : w.layers)
      for (WeightView* m : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) repack(w, *m);
    repack(w, w.output);
  }
  return w;
}

}  // namespace kvwise
