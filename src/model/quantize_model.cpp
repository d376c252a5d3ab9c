#include <map>

#include "base/error.h"
#include "model/convert.h"
#include "model/gguf_writer.h"
#include "tensor/quant.h"

namespace kvwise {

namespace {
// llama.cpp's general.file_type numbers.
uint32_t file_type(const std::string& name) {
  static const std::map<std::string, uint32_t> ft = {{"f32", 0},   {"f16", 1},     {"q4_0", 2},  {"q8_0", 7},
                                                     {"q4_k", 15}, {"q4_k_m", 15}, {"q6_k", 18}, {"bf16", 32}};
  auto it = ft.find(name);
  KV_CHECK(it != ft.end(), "unsupported quantization type '{}' (f32, f16, bf16, q8_0, q4_0, q4_k, q4_k_m, q6_k)", name);
  return it->second;
}
}  // namespace

QuantizeSummary quantize_model(const std::string& in_gguf, const std::string& out_gguf, const std::string& type_name,
                               const std::function<void(size_t, size_t)>& on_tensor) {
  QuantizeSummary summary;
  std::string name = type_name;
  for (auto& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  const uint32_t ftype = file_type(name);
  const bool k_mix = name == "q4_k_m";
  const DType base = k_mix ? DType::Q4_K : parse_dtype(name);
  auto in = GgufFile::open(in_gguf);
  GgufWriter w;
  copy_metadata(*in, w);
  w.set("general.file_type", GgufValue::u32(ftype));
  size_t done = 0;
  for (const auto& t : in->tensors()) {
    DType target = t.dims.size() == 2 ? base : DType::F32;
    // Q4_K_M: as llama.cpp, the output, value and down projections (the most sensitive) get Q6_K.
    if (k_mix && (t.name == "output.weight" || t.name.find("attn_v.weight") != std::string::npos ||
                  t.name.find("ffn_down.weight") != std::string::npos))
      target = DType::Q6_K;
    if (t.dims[0] % dtype_info(target).block_elems != 0) {  // row does not fit the blocks
      summary.fell_back.push_back(t.name);
      target = DType::F16;
    }
    if (t.dims.size() != 2 && t.type != DType::F32) target = DType::F32;
    const int64_t cols = t.dims[0], rows = t.elements() / cols;
    const size_t in_rb = row_bytes(t.type, cols), out_rb = row_bytes(target, cols);
    std::vector<uint8_t> out(out_rb * static_cast<size_t>(rows));
    std::vector<float> row(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; ++r) {
      dequantize_row(t.type, in->tensor_data(t) + static_cast<size_t>(r) * in_rb, row.data(), cols);
      quantize_row(target, row.data(), out.data() + static_cast<size_t>(r) * out_rb, cols);
    }
    w.add_tensor(t.name, t.dims, target, std::move(out));
    ++summary.tensors_per_type[dtype_info(target).name];
    if (on_tensor) on_tensor(++done, in->tensors().size());
  }
  w.write(out_gguf);
  return summary;
}

}  // namespace kvwise
