// A checkpoint directory as HF lays it out: config.json, weights (single file or
// sharded), and everything else (tokenizer files, generation_config.json, README) that
// is carried to outputs unchanged. Opening validates that every tensor the config
// implies is there with the right shape, whatever the expert layout.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/checkpoint/arch.h"
#include "core/checkpoint/config.h"
#include "core/io/tensor_store.h"

namespace emo {

inline constexpr const char* kConfigFile = "config.json";
inline constexpr const char* kProvenanceFile = "provenance.yaml";
inline constexpr const char* kModelCardFile = "README.md";

class Checkpoint {
 public:
  static Checkpoint open(const fs::path& dir);

  const fs::path& dir() const { return dir_; }
  const ModelConfig& config() const { return config_; }
  const TensorStore& store() const { return store_; }
  ExpertLayout layout() const { return layout_; }
  const std::vector<CanonicalTensor>& tensors() const { return tensors_; }
  const CanonicalTensor& tensor(const std::string& canonical_name) const;

  // The bytes of a canonical tensor: the stored tensor itself, or for the fused layout
  // the contiguous slice of gate_up_proj / down_proj that holds this expert.
  TensorView view(const CanonicalTensor& t) const;
  TensorView view(const std::string& canonical_name) const { return view(tensor(canonical_name)); }
  DType dtype_of(const CanonicalTensor& t) const { return view(t).dtype; }

  // Files other than config, weights, index and provenance: carried along to outputs.
  std::vector<fs::path> extra_files() const;
  // The dtype most parameter bytes are stored in.
  DType main_dtype() const;
  bool has_provenance() const;

 private:
  fs::path dir_;
  ModelConfig config_;
  TensorStore store_;
  ExpertLayout layout_ = ExpertLayout::PerExpert;
  std::vector<CanonicalTensor> tensors_;
  std::map<std::string, size_t> by_name_;
};

// Writing a model: the output tensors in canonical form, each with its dtype, and a
// source that pushes each tensor's bytes into a sink (whole, or a chunk at a time).
struct OutputTensor {
  CanonicalTensor tensor;
  DType dtype;
};
// Where a source puts a tensor's bytes, in order, whole or in pieces. Bytes that lie in
// a mapped checkpoint file can be handed over as such (mapped()): the writer then copies
// them file-to-file in the kernel, as cp does, instead of through user memory.
class ByteSink {
 public:
  using Fn = std::function<void(const void* data, size_t n, const MappedFile* file)>;
  explicit ByteSink(Fn fn) : fn_(std::move(fn)) {}
  void operator()(const void* data, size_t n) const { fn_(data, n, nullptr); }
  void mapped(const MappedFile& file, const void* data, size_t n) const { fn_(data, n, &file); }

 private:
  Fn fn_;
};
using TensorSource = std::function<void(const OutputTensor& t, const ByteSink& sink)>;

struct WriteOptions {
  ExpertLayout layout = ExpertLayout::PerExpert;
  uint64_t max_shard_bytes = kDefaultShardBytes;
};

// Writes config.json and the weights into `dir` (an AtomicDir's temporary path),
// streaming: one tensor (or one chunk) in memory at a time. For the fused layout the
// experts of a layer are concatenated in router order, gate rows before up rows.
// Returns the content hash of what it wrote (see content_hash.h), computed on the way.
// A tensor's content as the content hash sees it (content_hash.h).
struct TensorDigest {
  DType dtype;
  Shape shape;
  uint64_t nbytes = 0;
  std::string sha256;  // hex of the bytes
};
using TensorDigests = std::map<std::string, TensorDigest>;  // canonical name -> digest

std::string write_model(const fs::path& dir, const ModelConfig& config, const std::vector<OutputTensor>& tensors,
                        const WriteOptions& options, const TensorSource& source, TensorDigests* digests_out = nullptr);

// Copies the files a checkpoint carries (tokenizer, generation config, ...) into `dir`.
void copy_extra_files(const Checkpoint& from, const fs::path& dir);

// Outputs follow their input: same expert layout; one file if the input was one file,
// else HF's 5 GB shards (or the input's largest shard, if larger).
WriteOptions write_options_like(const Checkpoint& ck);

// Streams bytes of `view` into `sink` in slices, converting to `dtype` on the way when
// it differs (float dtypes), and releases the source pages behind it so a 28 GB copy
// does not pin the input in memory.
void stream_view(const TensorView& view, DType dtype, const ByteSink& sink);

}  // namespace emo
