#include "model/gguf_writer.h"

#include <cstdio>
#include <cstring>

#include "base/error.h"

namespace kvwise {

namespace {
constexpr size_t kAlignment = 32;

struct Out {
  std::vector<uint8_t> buf;
  void put_bytes(const void* p, size_t n) {
    const size_t at = buf.size();
    buf.resize(at + n);
    if (n) std::memcpy(buf.data() + at, p, n);
  }
  template <typename T>
  void put(T v) {
    put_bytes(&v, sizeof(T));
  }
  void put_string(const std::string& s) {
    put<uint64_t>(s.size());
    put_bytes(s.data(), s.size());
  }
  void pad(size_t align) {
    while (buf.size() % align) buf.push_back(0);
  }
};

void put_value(Out& o, const GgufValue& v, GgufType t) {
  switch (t) {
    case GgufType::U8:
      o.put<uint8_t>(static_cast<uint8_t>(v.as_int()));
      break;
    case GgufType::I8:
      o.put<int8_t>(static_cast<int8_t>(v.as_int()));
      break;
    case GgufType::U16:
      o.put<uint16_t>(static_cast<uint16_t>(v.as_int()));
      break;
    case GgufType::I16:
      o.put<int16_t>(static_cast<int16_t>(v.as_int()));
      break;
    case GgufType::U32:
      o.put<uint32_t>(static_cast<uint32_t>(v.as_int()));
      break;
    case GgufType::I32:
      o.put<int32_t>(static_cast<int32_t>(v.as_int()));
      break;
    case GgufType::U64:
      o.put<uint64_t>(static_cast<uint64_t>(v.as_int()));
      break;
    case GgufType::I64:
      o.put<int64_t>(v.as_int());
      break;
    case GgufType::F32:
      o.put<float>(static_cast<float>(v.as_float()));
      break;
    case GgufType::F64:
      o.put<double>(v.as_float());
      break;
    case GgufType::BOOL:
      o.put<uint8_t>(v.as_bool() ? 1 : 0);
      break;
    case GgufType::STRING:
      o.put_string(v.as_string());
      break;
    case GgufType::ARRAY: {
      o.put<uint32_t>(static_cast<uint32_t>(v.elem_type));
      const auto& a = v.as_array();
      o.put<uint64_t>(a.size());
      for (const auto& x : a) put_value(o, x, v.elem_type);
      break;
    }
  }
}
}  // namespace

void GgufWriter::set(const std::string& key, GgufValue value) {
  for (auto& [k, v] : kv_)
    if (k == key) {
      v = std::move(value);
      return;
    }
  kv_.emplace_back(key, std::move(value));
}

void GgufWriter::add_tensor(const std::string& name, std::vector<int64_t> dims, DType type, std::vector<uint8_t> data) {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  const DTypeInfo& info = dtype_info(type);
  KV_CHECK(dims[0] % info.block_elems == 0, "tensor '{}': row {} not a multiple of {} block size", name, dims[0],
           info.name);
  KV_CHECK(data.size() == static_cast<size_t>(n / info.block_elems * info.block_bytes),
           "tensor '{}': {} bytes of data for {} elements of {}", name, data.size(), n, info.name);
  tensors_.push_back({name, std::move(dims), type, std::move(data)});
}

void GgufWriter::write(const std::string& path) const {
  Out o;
  o.put<uint32_t>(0x46554747);
  o.put<uint32_t>(3);
  o.put<uint64_t>(tensors_.size());
  o.put<uint64_t>(kv_.size());
  for (const auto& [k, v] : kv_) {
    o.put_string(k);
    o.put<uint32_t>(static_cast<uint32_t>(v.type));
    put_value(o, v, v.type);
  }
  uint64_t offset = 0;
  for (const auto& t : tensors_) {
    o.put_string(t.name);
    o.put<uint32_t>(static_cast<uint32_t>(t.dims.size()));
    for (int64_t d : t.dims) o.put<uint64_t>(static_cast<uint64_t>(d));
    o.put<uint32_t>(static_cast<uint32_t>(t.type));
    o.put<uint64_t>(offset);
    offset += (t.data.size() + kAlignment - 1) / kAlignment * kAlignment;
  }
  o.pad(kAlignment);
  FILE* f = std::fopen(path.c_str(), "wb");
  KV_CHECK(f != nullptr, "{}: cannot create: {}", path, std::strerror(errno));
  bool ok = std::fwrite(o.buf.data(), 1, o.buf.size(), f) == o.buf.size();
  static const uint8_t zeros[kAlignment] = {};
  for (const auto& t : tensors_) {
    ok = ok && std::fwrite(t.data.data(), 1, t.data.size(), f) == t.data.size();
    const size_t pad = (kAlignment - t.data.size() % kAlignment) % kAlignment;
    ok = ok && std::fwrite(zeros, 1, pad, f) == pad;
  }
  ok = (std::fclose(f) == 0) && ok;
  KV_CHECK(ok, "{}: write failed: {}", path, std::strerror(errno));
}

void copy_metadata(const GgufFile& from, GgufWriter& to, const std::vector<std::string>& skip) {
  for (const auto& [k, v] : from.metadata()) {
    bool skipped = false;
    for (const auto& s : skip) skipped = skipped || s == k;
    if (!skipped) to.set(k, v);
  }
}

}  // namespace kvwise
