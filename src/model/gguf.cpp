#include "model/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cstring>

#include "base/error.h"

namespace kvwise {

namespace {

constexpr uint64_t kMaxTensors = 1 << 20;
constexpr uint64_t kMaxKv = 1 << 20;
constexpr int kMaxDims = 4;
constexpr int kMaxArrayDepth = 2;

// Bounds-checked reader over the mapped file.
class Cursor {
 public:
  Cursor(const uint8_t* data, size_t size, const std::string& path) : data_(data), size_(size), path_(path) {}
  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }

  void need(uint64_t n, const char* what) const {
    if (n > remaining())
      fail("{}: truncated file: {} needs {} bytes at offset {}, only {} left", path_, what, n, pos_, remaining());
  }
  template <typename T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string read_string(const char* what) {
    const uint64_t n = read<uint64_t>(what);
    need(n, what);
    std::string s(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return s;
  }
  const std::string& path() const { return path_; }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& path_;
};

size_t min_encoded_size(GgufType t) {
  switch (t) {
    case GgufType::U8:
    case GgufType::I8:
    case GgufType::BOOL:
      return 1;
    case GgufType::U16:
    case GgufType::I16:
      return 2;
    case GgufType::U32:
    case GgufType::I32:
    case GgufType::F32:
      return 4;
    case GgufType::U64:
    case GgufType::I64:
    case GgufType::F64:
    case GgufType::STRING:
      return 8;
    case GgufType::ARRAY:
      return 12;
  }
  return 1;
}

bool valid_type(uint32_t t) {
  return t <= static_cast<uint32_t>(GgufType::F64);
}

GgufValue read_value(Cursor& c, GgufType t, int depth, const std::string& key) {
  GgufValue out;
  out.type = t;
  switch (t) {
    case GgufType::U8:
      out.v = uint64_t{c.read<uint8_t>("u8 value")};
      break;
    case GgufType::I8:
      out.v = int64_t{c.read<int8_t>("i8 value")};
      break;
    case GgufType::U16:
      out.v = uint64_t{c.read<uint16_t>("u16 value")};
      break;
    case GgufType::I16:
      out.v = int64_t{c.read<int16_t>("i16 value")};
      break;
    case GgufType::U32:
      out.v = uint64_t{c.read<uint32_t>("u32 value")};
      break;
    case GgufType::I32:
      out.v = int64_t{c.read<int32_t>("i32 value")};
      break;
    case GgufType::U64:
      out.v = c.read<uint64_t>("u64 value");
      break;
    case GgufType::I64:
      out.v = c.read<int64_t>("i64 value");
      break;
    case GgufType::F32:
      out.v = double{c.read<float>("f32 value")};
      break;
    case GgufType::F64:
      out.v = c.read<double>("f64 value");
      break;
    case GgufType::BOOL: {
      const uint8_t b = c.read<uint8_t>("bool value");
      KV_CHECK(b <= 1, "{}: metadata '{}': invalid bool byte {}", c.path(), key, b);
      out.v = b != 0;
      break;
    }
    case GgufType::STRING:
      out.v = c.read_string("string value");
      break;
    case GgufType::ARRAY: {
      KV_CHECK(depth < kMaxArrayDepth, "{}: metadata '{}': arrays nested too deeply", c.path(), key);
      const uint32_t et = c.read<uint32_t>("array type");
      KV_CHECK(valid_type(et), "{}: metadata '{}': unknown array element type {}", c.path(), key, et);
      out.elem_type = static_cast<GgufType>(et);
      const uint64_t n = c.read<uint64_t>("array length");
      KV_CHECK(n <= c.remaining() / min_encoded_size(out.elem_type),
               "{}: metadata '{}': array length {} exceeds the file", c.path(), key, n);
      std::vector<GgufValue> xs;
      xs.reserve(n);
      for (uint64_t i = 0; i < n; ++i) xs.push_back(read_value(c, out.elem_type, depth + 1, key));
      out.v = std::move(xs);
      break;
    }
  }
  return out;
}

}  // namespace

const char* gguf_type_name(GgufType t) {
  static const char* names[] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                "bool", "string", "array", "u64", "i64", "f64"};
  const auto i = static_cast<uint32_t>(t);
  return i < 13 ? names[i] : "?";
}

bool GgufValue::is_integer() const {
  return std::holds_alternative<uint64_t>(v) || std::holds_alternative<int64_t>(v);
}

int64_t GgufValue::as_int() const {
  if (auto* u = std::get_if<uint64_t>(&v)) return static_cast<int64_t>(*u);
  if (auto* i = std::get_if<int64_t>(&v)) return *i;
  fail("metadata value of type {} is not an integer", gguf_type_name(type));
}
double GgufValue::as_float() const {
  if (auto* d = std::get_if<double>(&v)) return *d;
  return static_cast<double>(as_int());
}
bool GgufValue::as_bool() const {
  if (auto* b = std::get_if<bool>(&v)) return *b;
  return as_int() != 0;
}
const std::string& GgufValue::as_string() const {
  if (auto* s = std::get_if<std::string>(&v)) return *s;
  fail("metadata value of type {} is not a string", gguf_type_name(type));
}
const std::vector<GgufValue>& GgufValue::as_array() const {
  if (auto* a = std::get_if<std::vector<GgufValue>>(&v)) return *a;
  fail("metadata value of type {} is not an array", gguf_type_name(type));
}

std::string GgufValue::to_display(size_t max_items) const {
  switch (type) {
    case GgufType::STRING: {
      const std::string& s = as_string();
      return s.size() > 60 ? fmt::format("\"{}...\" ({} bytes)", s.substr(0, 60), s.size()) : "\"" + s + "\"";
    }
    case GgufType::ARRAY: {
      const auto& a = as_array();
      std::string out = fmt::format("[{} x {}] [", a.size(), gguf_type_name(elem_type));
      for (size_t i = 0; i < a.size() && i < max_items; ++i) out += (i ? ", " : "") + a[i].to_display(0);
      return out + (a.size() > max_items ? ", ...]" : "]");
    }
    case GgufType::F32:
    case GgufType::F64:
      return fmt::format("{}", as_float());
    case GgufType::BOOL:
      return as_bool() ? "true" : "false";
    default:
      return fmt::format("{}", as_int());
  }
}

int64_t GgufTensorInfo::elements() const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

std::unique_ptr<GgufFile> GgufFile::open(const std::string& path) {
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->path_ = path;
  const int fd = ::open(path.c_str(), O_RDONLY);
  KV_CHECK(fd >= 0, "{}: cannot open: {}", path, std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("{}: not a regular file", path);
  }
  f->size_ = static_cast<size_t>(st.st_size);
  if (f->size_ < 4) {
    ::close(fd);
    fail("{}: not a GGUF file (only {} bytes)", path, f->size_);
  }
  void* m = mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  KV_CHECK(m != MAP_FAILED, "{}: cannot map: {}", path, std::strerror(errno));
  f->data_ = static_cast<const uint8_t*>(m);

  Cursor c(f->data_, f->size_, f->path_);
  const uint32_t magic = c.read<uint32_t>("magic");
  KV_CHECK(magic == 0x46554747, "{}: not a GGUF file (bad magic 0x{:08x})", path, magic);
  f->version_ = c.read<uint32_t>("version");
  KV_CHECK(f->version_ == 2 || f->version_ == 3, "{}: unsupported GGUF version {} (kvwise reads 2 and 3)", path,
           f->version_);
  const uint64_t n_tensors = c.read<uint64_t>("tensor count");
  const uint64_t n_kv = c.read<uint64_t>("metadata count");
  KV_CHECK(n_tensors <= kMaxTensors, "{}: implausible tensor count {}", path, n_tensors);
  KV_CHECK(n_kv <= kMaxKv, "{}: implausible metadata count {}", path, n_kv);

  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = c.read_string("metadata key");
    const uint32_t t = c.read<uint32_t>("metadata type");
    KV_CHECK(valid_type(t), "{}: metadata '{}' has unknown type {}", path, key, t);
    GgufValue v = read_value(c, static_cast<GgufType>(t), 0, key);
    KV_CHECK(f->kv_index_.count(key) == 0, "{}: duplicate metadata key '{}'", path, key);
    f->kv_index_[key] = f->kv_.size();
    f->kv_.emplace_back(std::move(key), std::move(v));
  }
  if (auto a = f->get_int("general.alignment")) {
    KV_CHECK(*a > 0 && *a <= 1 << 20 && (*a & (*a - 1)) == 0, "{}: invalid alignment {}", path, *a);
    f->alignment_ = static_cast<size_t>(*a);
  }

  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t;
    t.name = c.read_string("tensor name");
    const uint32_t nd = c.read<uint32_t>("tensor rank");
    KV_CHECK(nd >= 1 && nd <= kMaxDims, "{}: tensor '{}' has rank {} (1..4 allowed)", path, t.name, nd);
    uint64_t elements = 1;
    for (uint32_t d = 0; d < nd; ++d) {
      const uint64_t dim = c.read<uint64_t>("tensor dimension");
      KV_CHECK(dim >= 1 && dim <= (uint64_t{1} << 40), "{}: tensor '{}' has invalid dimension {}", path, t.name, dim);
      KV_CHECK(elements <= (uint64_t{1} << 48) / dim, "{}: tensor '{}' is implausibly large", path, t.name);
      elements *= dim;
      t.dims.push_back(static_cast<int64_t>(dim));
    }
    const uint32_t type = c.read<uint32_t>("tensor type");
    const DTypeInfo* info = dtype_info(type);
    KV_CHECK(info != nullptr, "{}: tensor '{}' has unknown type id {}", path, t.name, type);
    t.type = static_cast<DType>(type);
    KV_CHECK(t.dims[0] % info->block_elems == 0, "{}: tensor '{}' row of {} is not a multiple of the {} block size",
             path, t.name, t.dims[0], info->name);
    t.bytes = elements / static_cast<uint64_t>(info->block_elems) * static_cast<uint64_t>(info->block_bytes);
    t.offset = c.read<uint64_t>("tensor offset");
    KV_CHECK(t.offset % f->alignment_ == 0, "{}: tensor '{}' offset {} is not aligned to {}", path, t.name, t.offset,
             f->alignment_);
    KV_CHECK(f->tensor_index_.count(t.name) == 0, "{}: duplicate tensor '{}'", path, t.name);
    f->tensor_index_[t.name] = f->tensors_.size();
    f->tensors_.push_back(std::move(t));
  }
  f->data_offset_ = (c.pos() + f->alignment_ - 1) / f->alignment_ * f->alignment_;
  KV_CHECK(f->data_offset_ <= f->size_ || n_tensors == 0, "{}: truncated before the tensor data", path);
  const uint64_t data_size = f->size_ > f->data_offset_ ? f->size_ - f->data_offset_ : 0;
  for (const auto& t : f->tensors_)
    KV_CHECK(t.offset <= data_size && t.bytes <= data_size - t.offset,
             "{}: tensor '{}' ({} bytes at offset {}) lies outside the file's {} bytes of tensor data", path, t.name,
             t.bytes, t.offset, data_size);
  return f;
}

GgufFile::~GgufFile() {
  if (data_) munmap(const_cast<uint8_t*>(data_), size_);
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

std::optional<int64_t> GgufFile::get_int(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  KV_CHECK(v->is_integer(), "{}: metadata '{}' should be an integer, is {}", path_, key, gguf_type_name(v->type));
  return v->as_int();
}
std::optional<double> GgufFile::get_float(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  KV_CHECK(v->is_integer() || v->type == GgufType::F32 || v->type == GgufType::F64,
           "{}: metadata '{}' should be a number, is {}", path_, key, gguf_type_name(v->type));
  return v->as_float();
}
std::optional<std::string> GgufFile::get_string(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  KV_CHECK(v->type == GgufType::STRING, "{}: metadata '{}' should be a string", path_, key);
  return v->as_string();
}
std::optional<bool> GgufFile::get_bool(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  KV_CHECK(v->type == GgufType::BOOL || v->is_integer(), "{}: metadata '{}' should be a bool", path_, key);
  return v->as_bool();
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

uint64_t GgufFile::fingerprint() const {
  XXH3_state_t* st = XXH3_createState();
  XXH3_64bits_reset(st);
  XXH3_64bits_update(st, data_, data_offset_);
  for (const GgufTensorInfo& t : tensors_) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(t.bytes, 256));
    XXH3_64bits_update(st, tensor_data(t), n);
    XXH3_64bits_update(st, tensor_data(t) + t.bytes - n, n);
  }
  const uint64_t h = XXH3_64bits_digest(st);
  XXH3_freeState(st);
  return h;
}

}  // namespace kvwise
