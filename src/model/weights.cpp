#include "model/weights.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "base/error.h"
#include "model/arch.h"
#include "tensor/packed.h"
#include "tensor/quant.h"

namespace kvwise {

const GgufTensorInfo& TensorBinder::find(const std::string& name, const std::vector<int64_t>& dims) {
  const GgufTensorInfo* t = f_.find_tensor(name);
  KV_CHECK(t != nullptr, "{}: missing required tensor '{}'", f_.path(), name);
  KV_CHECK(t->dims == dims, "{}: tensor '{}' has shape {} but the config needs {}", f_.path(), name,
           fmt::join(t->dims, "x"), fmt::join(dims, "x"));
  KV_CHECK(dtype_info(t->type).compute, "{}: tensor '{}' has type {}, which kvwise cannot compute with", f_.path(),
           name, dtype_name(t->type));
  w_.mapped_bytes += t->bytes;
  w_.parameters += t->elements();
  return *t;
}

WeightView TensorBinder::matrix(const std::string& name, int64_t cols, int64_t rows) {
  const GgufTensorInfo& t = find(name, {cols, rows});
  return WeightView{t.type, f_.tensor_data(t), rows, cols, row_bytes(t.type, cols)};
}

WeightView TensorBinder::rows(const WeightView& m, int64_t r0, int64_t n) {
  KV_CHECK(r0 >= 0 && n > 0 && r0 + n <= m.rows, "rows [{}, {}) of a {}-row matrix", r0, r0 + n, m.rows);
  WeightView v = m;
  v.data = m.data + static_cast<size_t>(r0) * m.row_bytes;
  v.rows = n;
  return v;
}

const float* TensorBinder::vec(const std::string& name, int64_t n, bool optional) {
  if (optional && !f_.find_tensor(name)) return nullptr;
  const GgufTensorInfo& t = find(name, {n});
  if (t.type == DType::F32) return reinterpret_cast<const float*>(f_.tensor_data(t));
  w_.owned.emplace_back(static_cast<size_t>(n));
  dequantize_row(t.type, f_.tensor_data(t), w_.owned.back().data(), n);
  return w_.owned.back().data();
}

namespace {

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
  const ArchFamily* family = arch_registry().find(c.arch);
  KV_CHECK(family != nullptr, "{}: no architecture file runs '{}'", f.path(), c.arch);
  ModelWeights w;
  w.owned.reserve(static_cast<size_t>(12 * c.n_layers + 12));  // pointers into it must stay valid
  TensorBinder b{f, w};
  w.tok_embd = b.matrix("token_embd.weight", c.dim, c.n_vocab);
  w.output_norm = b.vec("output_norm.weight", c.dim);
  if (f.find_tensor("output.weight")) {
    w.output = b.matrix("output.weight", c.dim, c.n_vocab);
  } else {
    w.output = w.tok_embd;
    w.tied_output = true;
  }
  w.rope_freqs = b.vec("rope_freqs.weight", c.n_rot / 2, true);
  w.rope_factors_long = b.vec("rope_factors_long.weight", c.n_rot / 2, true);
  w.rope_factors_short = b.vec("rope_factors_short.weight", c.n_rot / 2, true);
  for (int l = 0; l < c.n_layers; ++l) {
    LayerWeights L;
    family->bind_layer(b, c, l, L);
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
