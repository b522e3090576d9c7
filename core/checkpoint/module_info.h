// Where a module's experts came from: config.json["emo_module"], written by extract and
// read by merge, finetune and extract of a module. It arrives with checkpoints from
// elsewhere, so it is parsed without LibTorch (fuzz_config reaches it) and strictly.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/checkpoint/config.h"

namespace emo {

inline constexpr const char* kModuleKey = "emo_module";

// config.json["emo_module"].
struct ModuleInfo {
  std::string parent_hash;                      // content hash of the checkpoint it was cut from
  std::map<int, std::vector<int64_t>> experts;  // layer -> parent router index of each module expert
  std::string root_hash;                        // the full model at the root of the lineage
  std::map<int, std::vector<int64_t>> root_experts;  // layer -> root router index of each module expert

  Json to_json() const;
  static std::optional<ModuleInfo> of(const ModelConfig& config);  // emo::Error if malformed
};

}  // namespace emo
