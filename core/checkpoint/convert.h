// Rewriting a checkpoint: another expert layout, shard size or float dtype, streaming,
// with the same content (the content hash is unchanged unless the dtype changes).
#pragma once

#include <functional>
#include <optional>

#include "core/checkpoint/checkpoint.h"
#include "core/util/fields.h"

namespace emo {

struct ConvertOptions {
  std::optional<ExpertLayout> layout;
  std::optional<uint64_t> max_shard_bytes;
  std::optional<DType> dtype;  // float tensors only; other dtypes are copied as they are
};

// Writes config.json, weights and the carried files into `dir`; returns the content hash.
// progress(bytes_done) after each tensor.
std::string convert_checkpoint(const Checkpoint& src, const fs::path& dir, const ConvertOptions& options,
                               const std::function<void(uint64_t)>& progress = {});

// emo convert as one call: opens MODEL, writes OUT atomically (weights, config, the input's
// other files, provenance.yaml, README.md). The settings are kept as given ("" = as the
// input), for provenance; emo::Error naming the flag when one does not parse.
struct ConvertRequest {
  fs::path model, out;
  std::string layout, shard_size, dtype;  // "per-expert"/"fused", "5GB", "bf16"
  bool overwrite = false;
  std::vector<std::string> command_line;
  ConvertOptions options() const;
};
struct ConvertResult {
  fs::path out;
  std::string content_hash;
};
ConvertResult run_convert(const ConvertRequest& request, const std::function<void(uint64_t done, uint64_t total)>& progress = {});
const RequestSpec<ConvertRequest>& convert_request_spec();

}  // namespace emo
