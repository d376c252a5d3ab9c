// GGUF files (versions 2 and 3): metadata of every value type, the tensor table, and tensor data
// mapped read-only. Every offset and size is checked against the file before it is used, so a
// corrupt or truncated file gives a kvwise::Error naming the problem, never an out-of-bounds read.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "tensor/dtype.h"

namespace kvwise {

enum class GgufType : uint32_t {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
};
const char* gguf_type_name(GgufType t);

struct GgufValue {
  GgufType type = GgufType::U32;
  GgufType elem_type = GgufType::U8;  // for arrays
  std::variant<uint64_t, int64_t, double, bool, std::string, std::vector<GgufValue>> v;

  static GgufValue u32(uint32_t x) { return {GgufType::U32, GgufType::U8, uint64_t{x}}; }
  static GgufValue i32(int32_t x) { return {GgufType::I32, GgufType::U8, int64_t{x}}; }
  static GgufValue f32(float x) { return {GgufType::F32, GgufType::U8, double{x}}; }
  static GgufValue boolean(bool x) { return {GgufType::BOOL, GgufType::U8, x}; }
  static GgufValue str(std::string x) { return {GgufType::STRING, GgufType::U8, std::move(x)}; }
  static GgufValue array(GgufType elem, std::vector<GgufValue> xs) { return {GgufType::ARRAY, elem, std::move(xs)}; }

  bool is_integer() const;
  int64_t as_int() const;   // throws unless an integer type
  double as_float() const;  // integers and floats
  bool as_bool() const;
  const std::string& as_string() const;
  const std::vector<GgufValue>& as_array() const;
  std::string to_display(size_t max_items = 8) const;
};

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> dims;  // ggml order: dims[0] is the contiguous (row) dimension
  DType type = DType::F32;
  uint64_t offset = 0;  // relative to the data section
  uint64_t bytes = 0;
  int64_t elements() const;
};

class GgufFile {
 public:
  // Opens and validates the file; throws kvwise::Error on any structural problem.
  static std::unique_ptr<GgufFile> open(const std::string& path);
  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  size_t file_size() const { return size_; }
  size_t alignment() const { return alignment_; }
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }

  const GgufValue* find(const std::string& key) const;
  std::optional<int64_t> get_int(const std::string& key) const;
  std::optional<double> get_float(const std::string& key) const;
  std::optional<std::string> get_string(const std::string& key) const;
  std::optional<bool> get_bool(const std::string& key) const;

  const GgufTensorInfo* find_tensor(const std::string& name) const;
  // Identifies the model for caches that outlive a process (prefix-cache blocks on disk): a hash of the
  // header (metadata, tensor names, types, shapes, offsets) and of the first and last bytes of every
  // tensor, so that two files of the same shape with different weights differ too.
  uint64_t fingerprint() const;
  const uint8_t* tensor_data(const GgufTensorInfo& t) const { return data_ + data_offset_ + t.offset; }

 private:
  GgufFile() = default;
  std::string path_;
  uint32_t version_ = 0;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  size_t alignment_ = 32;
  size_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::map<std::string, size_t> kv_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

}  // namespace kvwise
