// Randomly initialised checkpoints in exact HF layout (`emo init`). Presets are data
// (data/presets/<name>.json, compiled in):
// a config.json body plus the tokenizer the preset ships with. Weights follow HF's
// _init_weights (Linear and Embedding ~ N(0, initializer_range), the padding row of the
// embedding zero, RMSNorm weights one, biases zero), drawn from a counter-based
// generator so any chunk of any tensor is reproducible on its own: the same seed gives
// the same bytes however the tensor is split, on any machine, with or without LibTorch.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/checkpoint/checkpoint.h"
#include "core/util/fields.h"

namespace emo {

struct Preset {
  std::string name;
  std::string description;
  std::string config_json;  // the config.json body
  std::string tokenizer;    // folder under data/tokenizers, or "" when none ships
  DType dtype;              // default storage dtype
};
const std::vector<Preset>& presets();
const Preset& find_preset(const std::string& name);  // emo::Error listing the presets

struct InitOptions {
  uint64_t seed = 0;
  DType dtype = DType::F32;
  WriteOptions write;
  double initializer_range = 0.02;
  unsigned threads = 0;  // 0: hardware concurrency
};

// emo init as one call: the config (a preset, or a config file), --set overrides, the
// weights, the preset's tokenizer files (from data_root/tokenizers), provenance.yaml and
// README.md, written into OUT atomically. Settings are kept as given, for provenance.
struct InitRequest {
  std::string preset;
  fs::path config, out;
  uint64_t seed = 0;
  std::string dtype;  // "": the preset's (fp32 for a config file)
  std::vector<std::string> sets;  // key=value
  std::string layout = "per-expert", shard_size = "5GB";
  bool overwrite = false;
  fs::path data_root;  // where tokenizers/ is (the caller's data folder)
  std::vector<std::string> command_line;
};
struct InitResult {
  fs::path out;
  std::string content_hash;
  uint64_t parameters = 0;
};
InitResult run_init(const InitRequest& request);
const RequestSpec<InitRequest>& init_request_spec();

// Fills `n` values of tensor `name` starting at element `offset` with N(0, std) draws.
void init_normal(uint64_t seed, const std::string& name, uint64_t offset, float std, float* out, size_t n);

// Writes config.json and the weights of a freshly initialised model into `dir`.
// Returns the content hash of what it wrote.
std::string write_initialised_model(const fs::path& dir, const ModelConfig& config, const InitOptions& options);

// The values HF's _init_weights gives tensor `t` (chunk [offset, offset+n) of its
// flattened elements), in float32.
void init_tensor_chunk(const CanonicalTensor& t, const ModelConfig& config, const InitOptions& options,
                       uint64_t offset, float* out, size_t n);

// config.json, or the same keys in YAML (`emo init --config`, `emo pretrain --config`).
ModelConfig load_model_config_file(const std::string& path);

// tokenizer.json of `tokenizer_dir` (and its LICENSE) plus the small HF files a tokenizer
// loader expects (tokenizer_config.json, special_tokens_map.json, generation_config.json).
void write_tokenizer_files(const fs::path& out, const fs::path& tokenizer_dir, const ModelConfig& config);

// The shipped tokenizer folder (under data/tokenizers) a config without a preset uses.
std::string default_tokenizer_for(const ModelConfig& config);

}  // namespace emo
