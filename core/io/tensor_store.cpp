#include "core/io/tensor_store.h"

#include <cstdio>
#include <set>

#include "core/io/json.h"
#include "core/util/error.h"

namespace emo {

namespace {

struct Index {
  std::map<std::string, std::string> weight_map;
  std::optional<uint64_t> total_size;
};

Index read_index(const fs::path& path) {
  const std::string file = path.string();
  Json j = load_json_file(file);
  if (!j.is_object()) fail(file, "", "expected a JSON object");
  Index idx;
  const Json& wm = json_member(j, "weight_map", file);
  if (!wm.is_object()) fail(file, "weight_map", "expected an object, found ", wm.type_name());
  for (auto it = wm.begin(); it != wm.end(); ++it) {
    if (!it.value().is_string()) fail(file, "weight_map." + it.key(), "expected a file name");
    std::string shard = it.value().get<std::string>();
    // A shard name is a file beside the index, never a path elsewhere.
    if (shard.empty() || shard.find('/') != std::string::npos || shard == "." || shard == "..")
      fail(file, "weight_map." + it.key(), "shard '", shard, "' is not a plain file name");
    idx.weight_map[it.key()] = shard;
  }
  if (j.contains("metadata")) {
    const Json& md = j["metadata"];
    if (!md.is_object()) fail(file, "metadata", "expected an object");
    if (md.contains("total_size")) {
      if (!md["total_size"].is_number_unsigned()) fail(file, "metadata.total_size", "expected a non-negative integer");
      idx.total_size = md["total_size"].get<uint64_t>();
    }
  }
  return idx;
}

}  // namespace

TensorStore TensorStore::open_dir(const fs::path& dir) {
  TensorStore s;
  s.dir_ = dir;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail(dir.string(), "", "not a checkpoint directory (missing or not a directory)");
  fs::path index_path = dir / kIndexFile;
  fs::path single_path = dir / kSingleWeightsFile;
  if (fs::exists(index_path, ec)) {
    s.sharded_ = true;
    Index idx = read_index(index_path);
    std::map<std::string, size_t> file_number;
    for (const auto& [name, shard] : idx.weight_map) {
      if (file_number.count(shard)) continue;
      fs::path shard_path = dir / shard;
      if (!fs::exists(shard_path, ec))
        fail(index_path.string(), "weight_map." + name, "names shard '", shard, "' which does not exist");
      file_number[shard] = s.files_.size();
      s.files_.push_back(SafetensorsFile::open(shard_path.string()));
    }
    uint64_t total = 0;
    for (const auto& [name, shard] : idx.weight_map) {
      const auto& f = s.files_[file_number[shard]];
      const TensorInfo* t = f->find(name);
      if (!t) fail(index_path.string(), "weight_map." + name, "shard '", shard, "' has no such tensor");
      s.where_[name] = {file_number[shard], t};
      total += t->nbytes();
    }
    for (const auto& f : s.files_)
      for (const auto& t : f->tensors())
        if (!idx.weight_map.count(t.name) || idx.weight_map[t.name] != fs::path(f->path()).filename().string())
          fail(f->path(), t.name, "tensor is not listed for this shard in ", kIndexFile);
    if (idx.total_size && *idx.total_size != total)
      fail(index_path.string(), "metadata.total_size", "says ", *idx.total_size, " bytes but the tensors hold ", total);
  } else if (fs::exists(single_path, ec)) {
    s.files_.push_back(SafetensorsFile::open(single_path.string()));
    for (const auto& t : s.files_[0]->tensors()) s.where_[t.name] = {0, &t};
  } else {
    // Pickled PyTorch weights can execute code when loaded; emo never reads them.
    if (fs::exists(dir / "pytorch_model.bin", ec) || fs::exists(dir / "pytorch_model.bin.index.json", ec))
      fail(dir.string(), "", "has only pickle weights (pytorch_model.bin), which emo refuses to load; convert them "
           "to safetensors first (see docs/formats.md)");
    fail(dir.string(), "", "no ", kSingleWeightsFile, " or ", kIndexFile);
  }
  return s;
}

const TensorInfo& TensorStore::info(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) fail(dir_.string(), name, "no such tensor in the checkpoint");
  return *it->second.info;
}

TensorView TensorStore::view(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) fail(dir_.string(), name, "no such tensor in the checkpoint");
  return files_[it->second.file]->view(*it->second.info);
}

const std::string& TensorStore::file_of(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) fail(dir_.string(), name, "no such tensor in the checkpoint");
  return files_[it->second.file]->path();
}

std::vector<std::string> TensorStore::names() const {
  std::vector<std::string> out;
  out.reserve(where_.size());
  for (const auto& kv : where_) out.push_back(kv.first);
  return out;
}

uint64_t TensorStore::total_bytes() const {
  uint64_t n = 0;
  for (const auto& kv : where_) n += kv.second.info->nbytes();
  return n;
}

uint64_t TensorStore::bytes_on_disk() const {
  uint64_t n = 0;
  for (const auto& f : files_) n += f->mapping()->size();
  return n;
}

std::vector<std::vector<TensorSpec>> plan_shards(const std::vector<TensorSpec>& specs, uint64_t max_bytes) {
  std::vector<std::vector<TensorSpec>> shards(1);
  uint64_t current = 0;
  for (const auto& s : specs) {
    uint64_t n = s.nbytes();
    if (!shards.back().empty() && current + n > max_bytes) {
      shards.emplace_back();
      current = 0;
    }
    shards.back().push_back(s);
    current += n;
  }
  return shards;
}

std::string shard_file_name(size_t index, size_t count) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", index + 1, count);
  return buf;
}

CheckpointWriter::CheckpointWriter(const fs::path& dir, const std::vector<TensorSpec>& specs,
                                   uint64_t max_shard_bytes, const Metadata& metadata)
    : dir_(dir), metadata_(metadata) {
  if (max_shard_bytes == 0) fail(dir.string(), "shard size", "must be positive");
  shards_ = plan_shards(specs, max_shard_bytes);
  for (size_t i = 0; i < shards_.size(); ++i)
    for (const auto& s : shards_[i]) {
      if (!shard_of_.emplace(s.name, i).second) fail(dir.string(), s.name, "tensor planned twice");
      total_bytes_ += s.nbytes();
    }
  open_shard(0);
}

void CheckpointWriter::open_shard(size_t i) {
  if (writer_) writer_->finish();
  current_shard_ = i;
  std::string name = shards_.size() == 1 ? kSingleWeightsFile : shard_file_name(i, shards_.size());
  writer_ = std::make_unique<SafetensorsWriter>(dir_ / name, shards_[i], metadata_);
}

SafetensorsWriter& CheckpointWriter::writer_for(const std::string& name) {
  auto it = shard_of_.find(name);
  if (it == shard_of_.end()) fail(dir_.string(), name, "tensor was not planned");
  if (it->second < current_shard_) fail(dir_.string(), name, "tensor written out of order");
  while (current_shard_ < it->second) open_shard(current_shard_ + 1);
  return *writer_;
}

void CheckpointWriter::write(const std::string& name, const void* data, size_t n) { writer_for(name).write(name, data, n); }

void CheckpointWriter::copy(const std::string& name, const MappedFile& file, const void* data, size_t n) {
  writer_for(name).copy(name, file, data, n);
}

void CheckpointWriter::flush() {
  if (writer_) writer_->flush();
}

void CheckpointWriter::finish() {
  while (current_shard_ + 1 < shards_.size()) open_shard(current_shard_ + 1);
  writer_->finish();
  if (shards_.size() == 1) return;
  Json weight_map = Json::object();
  std::vector<std::pair<std::string, std::string>> entries;
  for (size_t i = 0; i < shards_.size(); ++i)
    for (const auto& s : shards_[i]) entries.emplace_back(s.name, shard_file_name(i, shards_.size()));
  std::sort(entries.begin(), entries.end());
  for (const auto& [name, file] : entries) weight_map[name] = file;
  Json index = {{"metadata", {{"total_size", total_bytes_}}}, {"weight_map", weight_map}};
  write_file_atomic(dir_ / kIndexFile, index.dump(2) + "\n");
}

}  // namespace emo
