#include <map>

#include "base/error.h"
#include "model/convert.h"
#include "model/gguf_writer.h"
#include "model/quantize_mix.h"
#include "tensor/quant.h"

namespace kvwise {

QuantizeSummary quantize_model(const std::string& in_gguf, const std::string& out_gguf, const std::string& type_name,
                               const std::function<void(size_t, size_t)>& on_tensor) {
  QuantizeSummary summary;
  const QuantPreset preset = quant_preset(type_name);
  auto in = GgufFile::open(in_gguf);
  QuantModelInfo info;
  for (const auto& t : in->tensors()) {
    info.has_output |= t.name == "output.weight";
    if (t.name.find("attn_v.weight") != std::string::npos || t.name.find("attn_qkv.weight") != std::string::npos)
      ++info.n_attn_v;
  }
  const std::string arch = in->get_string("general.architecture").value_or("");
  info.n_layers = static_cast<int>(in->get_int(arch + ".block_count").value_or(0));
  GgufWriter w;
  copy_metadata(*in, w);
  w.set("general.file_type", GgufValue::u32(preset.file_type));
  w.set("general.quantization_version", GgufValue::u32(2));
  size_t done = 0;
  int attn_v = 0;
  for (const auto& t : in->tensors()) {
    const TensorQuantChoice c =
        choose_tensor_type(preset, info, t.name, static_cast<int>(t.dims.size()), t.dims[0], attn_v);
    if (t.name.find("attn_v.weight") != std::string::npos || t.name.find("attn_qkv.weight") != std::string::npos)
      ++attn_v;
    DType target = c.type;
    if (t.dims.size() != 2 && t.type != DType::F32) target = DType::F32;
    if (c.reason.rfind("fallback", 0) == 0) summary.fell_back.push_back(t.name);
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
    summary.tensors.push_back({t.name, dtype_name(t.type), dtype_name(target), c.reason});
    if (on_tensor) on_tensor(++done, in->tensors().size());
  }
  w.write(out_gguf);
  return summary;
}

}  // namespace kvwise
