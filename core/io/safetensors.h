// safetensors: 8-byte little-endian header length N, N bytes of JSON header
// ({name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}), then
// the tensor bytes. The reader maps the file and validates every claim of the header
// before anything uses it; the writer streams tensors one at a time.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/io/dtype.h"
#include "core/io/mapped_file.h"
#include "core/util/fs.h"

namespace emo {

using Shape = std::vector<int64_t>;
using Metadata = std::map<std::string, std::string>;

std::string shape_str(const Shape& s);  // "[128, 2048]"
// Element count, or emo::Error if it overflows 64 bits.
uint64_t shape_numel(const Shape& s, const std::string& file, const std::string& name);

// Headers larger than this are refused, as the reference implementation does (100 MB).
constexpr uint64_t kMaxHeaderBytes = 100ull * 1000 * 1000;

struct TensorInfo {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin = 0, end = 0;  // byte range inside the data section
  uint64_t nbytes() const { return end - begin; }
};

// Bytes of one tensor (or of a contiguous slice of one), kept alive by `owner`.
struct TensorView {
  std::string name;
  DType dtype;
  Shape shape;
  const uint8_t* data = nullptr;
  uint64_t nbytes = 0;
  std::shared_ptr<const MappedFile> owner;
  std::string file;  // for messages

  // The contiguous slice [index] along dim 0, shape shape[1:] (an expert of a fused tensor).
  TensorView slice0(int64_t index) const;
  // Rows [row_begin, row_end) along dim 0.
  TensorView rows(int64_t row_begin, int64_t row_end) const;
};

struct SafetensorsHeader {
  std::vector<TensorInfo> tensors;  // sorted by begin offset
  Metadata metadata;
};

// Validates a header against a data section of `data_size` bytes: JSON object, known
// dtypes, shape x dtype size == byte range, ranges in bounds, contiguous and
// non-overlapping (as the reference reader requires), no duplicate names.
SafetensorsHeader parse_safetensors_header(std::string_view header, uint64_t data_size,
                                           const std::string& file);

class SafetensorsFile {
 public:
  static std::shared_ptr<const SafetensorsFile> open(const std::string& path);

  const std::string& path() const { return map_->path(); }
  const std::vector<TensorInfo>& tensors() const { return header_.tensors; }
  const Metadata& metadata() const { return header_.metadata; }
  const TensorInfo* find(const std::string& name) const;
  TensorView view(const std::string& name) const;
  TensorView view(const TensorInfo& info) const;
  const std::shared_ptr<const MappedFile>& mapping() const { return map_; }
  uint64_t data_offset() const { return data_offset_; }

 private:
  std::shared_ptr<const MappedFile> map_;
  SafetensorsHeader header_;
  std::map<std::string, size_t> by_name_;
  uint64_t data_offset_ = 0;
};

struct TensorSpec {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t nbytes() const;
};

// The header bytes (length prefix included) for tensors laid out in `specs` order;
// padded with spaces to a multiple of 8 bytes so that data starts aligned, as HF does.
std::string build_safetensors_header(const std::vector<TensorSpec>& specs, const Metadata& metadata);

// Writes one .safetensors file: the header first (computed from the specs), then the
// tensors' bytes in spec order, a piece at a time, so no more than one tensor (or one
// chunk of one) is ever held in memory.
class SafetensorsWriter {
 public:
  SafetensorsWriter(const fs::path& path, std::vector<TensorSpec> specs, const Metadata& metadata);
  // Appends bytes to tensor `name`, which must be the next incomplete tensor in order.
  void write(const std::string& name, const void* data, size_t n);
  // The same, for bytes that lie in a mapped file: copied file-to-file by the kernel.
  void copy(const std::string& name, const MappedFile& file, const void* data, size_t n);
  void flush() { out_.flush(); }  // copies pending from copy() happen now
  // Checks every tensor got all its bytes; fsyncs and closes.
  void finish();
  const fs::path& path() const { return out_.path(); }

 private:
  void account(const std::string& name, size_t n);  // checks order and size before writing
  void advance(size_t n);
  OutFile out_;
  std::vector<TensorSpec> specs_;
  size_t current_ = 0;
  uint64_t written_in_current_ = 0;
};

}  // namespace emo
