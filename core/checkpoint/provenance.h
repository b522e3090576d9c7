// provenance.yaml: how an output was made. Every command that writes a checkpoint or a
// statistics file writes one: the command and its resolved settings, the inputs with
// their hashes, the output's hash, the emo version, times, metrics, and the parents'
// own provenance documents keyed by their hashes, so the whole lineage travels with
// the output.
#pragma once

#include <yaml-cpp/yaml.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/util/fs.h"

namespace emo {

inline constexpr int kProvenanceVersion = 1;

struct InputRef {
  std::string role;  // "model", "base", "module", "data", "stats", "experts"
  std::string path;
  std::string hash;  // "sha256:..." (content hash for checkpoints, bytes for files)
};

struct Provenance {
  std::string command;            // "extract", "finetune", "merge", "init", ...
  std::vector<std::string> argv;  // the command line, when run from the CLI
  std::string command_line;       // as a loaded file recorded it (argv empty): written back verbatim
  YAML::Node settings = YAML::Node(YAML::NodeType::Map);
  std::vector<InputRef> inputs;
  std::string output_hash;
  std::string emo_version;
  std::string started, finished;  // ISO-8601 UTC
  YAML::Node metrics = YAML::Node(YAML::NodeType::Map);
  YAML::Node extra = YAML::Node(YAML::NodeType::Map);  // command-specific facts (kept experts, recipe step)
  std::map<std::string, YAML::Node> parents;           // parent hash -> its provenance (Null for roots)

  Provenance();
  explicit Provenance(std::string command_name);

  YAML::Node to_yaml() const;
  std::string to_string() const;
  static Provenance from_yaml(const YAML::Node& node, const std::string& file);
  static std::optional<Provenance> load(const fs::path& dir);  // dir/provenance.yaml, if any
  void write(const fs::path& dir) const;

  // Records an input checkpoint and embeds its provenance (if it has one) as a parent.
  void add_parent(const std::string& role, const fs::path& dir, const std::string& hash);
  void add_input(const std::string& role, const std::string& path, const std::string& hash);
};

std::string now_iso8601();

}  // namespace emo
