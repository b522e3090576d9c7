// How an output was made, read back from provenance: `emo lineage` walks the parents
// every provenance.yaml embeds down to the roots (inputs with no provenance: data files,
// checkpoints from elsewhere); `emo verify` recomputes an output's hash and compares it
// with the one its provenance recorded.
#pragma once

#include <string>
#include <vector>

#include "core/io/json.h"
#include "core/util/fs.h"

namespace emo {

struct LineageNode {
  std::string role;     // how its child used it ("model", "data", ...; "" at the root)
  std::string command;  // what made it ("" for a root: no provenance)
  std::string hash, path;
  std::string recipe_step;  // "quickstart/merge" when a recipe step made it
  std::string finished;
  std::vector<LineageNode> inputs;
};

// From PATH/provenance.yaml (or, for a file a recipe step wrote, its step directory's).
LineageNode lineage_of(const fs::path& path);
// An indented tree; a node met again prints once and is then referred to.
std::string format_lineage(const LineageNode& root);
Json lineage_json(const LineageNode& root);

struct VerifyResult {
  fs::path path;
  std::string kind;  // "checkpoint", "file" or "directory"
  std::string recorded, actual;
  bool ok() const { return recorded == actual; }
};
// Recomputes the hash of what PATH holds (never trusting its provenance) and compares.
VerifyResult verify_output(const fs::path& path);

}  // namespace emo
