// All tensors of a checkpoint directory, whether in one model.safetensors or sharded
// behind model.safetensors.index.json (HF's {"metadata": {"total_size"}, "weight_map"}).
// Reading is lazy: opening maps the files and checks the headers; bytes are touched only
// when a view is used.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/io/safetensors.h"

namespace emo {

inline constexpr const char* kSingleWeightsFile = "model.safetensors";
inline constexpr const char* kIndexFile = "model.safetensors.index.json";
inline constexpr uint64_t kDefaultShardBytes = 5ull * 1000 * 1000 * 1000;  // HF's "5GB"

class TensorStore {
 public:
  static TensorStore open_dir(const fs::path& dir);

  bool contains(const std::string& name) const { return where_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;
  TensorView view(const std::string& name) const;
  std::vector<std::string> names() const;  // sorted
  uint64_t total_bytes() const;
  bool sharded() const { return sharded_; }
  const std::vector<std::shared_ptr<const SafetensorsFile>>& files() const { return files_; }
  const std::string& file_of(const std::string& name) const;
  uint64_t bytes_on_disk() const;  // sizes of the weight files

 private:
  struct Location {
    size_t file;
    const TensorInfo* info;
  };
  std::vector<std::shared_ptr<const SafetensorsFile>> files_;
  std::map<std::string, Location> where_;
  bool sharded_ = false;
  fs::path dir_;
};

// Splits tensors into shards as HF's save_pretrained does: in order, a new shard when
// the next tensor would push the current one past max_bytes (a tensor larger than
// max_bytes gets a shard of its own).
std::vector<std::vector<TensorSpec>> plan_shards(const std::vector<TensorSpec>& specs, uint64_t max_bytes);
std::string shard_file_name(size_t index, size_t count);  // model-00001-of-00003.safetensors

// Writes the weights of a checkpoint into `dir`: model.safetensors, or shards plus the
// index. Tensors arrive in plan order, a piece at a time; finish() closes the last shard
// and writes the index.
class CheckpointWriter {
 public:
  CheckpointWriter(const fs::path& dir, const std::vector<TensorSpec>& specs, uint64_t max_shard_bytes,
                   const Metadata& metadata = {{"format", "pt"}});
  void write(const std::string& name, const void* data, size_t n);
  void copy(const std::string& name, const MappedFile& file, const void* data, size_t n);
  void flush();  // copies pending from copy() happen now
  void finish();
  size_t shard_count() const { return shards_.size(); }

 private:
  void open_shard(size_t i);
  SafetensorsWriter& writer_for(const std::string& name);
  fs::path dir_;
  std::vector<std::vector<TensorSpec>> shards_;
  std::map<std::string, size_t> shard_of_;
  Metadata metadata_;
  size_t current_shard_ = 0;
  std::unique_ptr<SafetensorsWriter> writer_;
  uint64_t total_bytes_ = 0;
};

}  // namespace emo
