#include "core/checkpoint/provenance.h"

#include <ctime>

#include "core/checkpoint/checkpoint.h"
#include "core/util/error.h"
#include "core/util/shell.h"
#include "core/util/version.h"

namespace emo {

std::string now_iso8601() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

Provenance::Provenance() : emo_version(::emo::emo_version()), started(now_iso8601()) {}
Provenance::Provenance(std::string command_name) : Provenance() { command = std::move(command_name); }

YAML::Node Provenance::to_yaml() const {
  YAML::Node n(YAML::NodeType::Map);
  n["emo_provenance"] = kProvenanceVersion;
  n["command"] = command;
  // A loaded provenance writes its line back as it was: quoting it again would make the
  // whole line one word, one more layer per generation of the lineage.
  if (!argv.empty()) n["command_line"] = shell_words(argv);
  else if (!command_line.empty()) n["command_line"] = command_line;
  n["emo_version"] = emo_version;
  n["started"] = started;
  n["finished"] = finished;
  n["output_hash"] = output_hash;
  YAML::Node in(YAML::NodeType::Sequence);
  for (const auto& i : inputs) {
    YAML::Node e;
    e["role"] = i.role;
    e["path"] = i.path;
    e["hash"] = i.hash;
    in.push_back(e);
  }
  n["inputs"] = in;
  n["settings"] = settings;
  n["metrics"] = metrics;
  if (extra.size()) n["extra"] = extra;
  YAML::Node p(YAML::NodeType::Map);
  for (const auto& [hash, doc] : parents) p[hash] = doc;
  n["parents"] = p;
  return n;
}

std::string Provenance::to_string() const {
  YAML::Emitter out;
  out << to_yaml();
  return std::string(out.c_str()) + "\n";
}

namespace {
std::string scalar(const YAML::Node& n, const char* key, const std::string& file, bool required) {
  const YAML::Node v = n[key];
  if (!v) {
    if (required) fail(file, key, "missing");
    return "";
  }
  if (!v.IsScalar()) fail(file, key, "expected a string");
  return v.as<std::string>();
}
}  // namespace

Provenance Provenance::from_yaml(const YAML::Node& n, const std::string& file) {
  if (!n.IsMap()) fail(file, "", "expected a YAML mapping");
  Provenance p;
  const YAML::Node version = n["emo_provenance"];
  if (!version) fail(file, "emo_provenance", "missing (not an emo provenance file)");
  if (version.as<int>(-1) != kProvenanceVersion)
    fail(file, "emo_provenance", "version ", version.as<std::string>(), " is not supported (expected ", kProvenanceVersion, ")");
  p.command = scalar(n, "command", file, true);
  p.emo_version = scalar(n, "emo_version", file, false);
  p.started = scalar(n, "started", file, false);
  p.finished = scalar(n, "finished", file, false);
  p.output_hash = scalar(n, "output_hash", file, true);
  if (n["command_line"]) p.command_line = n["command_line"].as<std::string>();
  if (const YAML::Node in = n["inputs"]) {
    if (!in.IsSequence()) fail(file, "inputs", "expected a list");
    for (size_t i = 0; i < in.size(); ++i) {
      std::string where = cat("inputs[", i, "]");
      if (!in[i].IsMap()) fail(file, where, "expected a mapping");
      p.inputs.push_back({scalar(in[i], "role", file + ": " + where, true), scalar(in[i], "path", file + ": " + where, false),
                          scalar(in[i], "hash", file + ": " + where, true)});
    }
  }
  if (n["settings"]) p.settings = n["settings"];
  if (n["metrics"]) p.metrics = n["metrics"];
  if (n["extra"]) p.extra = n["extra"];
  if (const YAML::Node par = n["parents"]) {
    if (!par.IsMap()) fail(file, "parents", "expected a mapping from hash to provenance");
    for (auto it = par.begin(); it != par.end(); ++it) p.parents[it->first.as<std::string>()] = it->second;
  }
  return p;
}

std::optional<Provenance> Provenance::load(const fs::path& dir) {
  fs::path path = dir / kProvenanceFile;
  std::error_code ec;
  if (!fs::exists(path, ec)) return std::nullopt;
  YAML::Node n;
  try {
    n = YAML::LoadFile(path.string());
  } catch (const YAML::Exception& e) {
    fail(path.string(), cat("line ", e.mark.line + 1, ", column ", e.mark.column + 1), "not valid YAML: ", e.msg);
  }
  try {
    return from_yaml(n, path.string());
  } catch (const YAML::Exception& e) {  // a value of the wrong shape (a list where a name goes)
    fail(path.string(), cat("line ", e.mark.line + 1, ", column ", e.mark.column + 1), "unexpected value: ", e.msg);
  }
}

void Provenance::write(const fs::path& dir) const { write_file_atomic(dir / kProvenanceFile, to_string()); }

void Provenance::add_input(const std::string& role, const std::string& path, const std::string& hash) {
  inputs.push_back({role, fs::absolute(path).lexically_normal().string(), hash});
}

void Provenance::add_parent(const std::string& role, const fs::path& dir, const std::string& hash) {
  add_input(role, dir.string(), hash);
  auto parent = load(dir);
  parents[hash] = parent ? parent->to_yaml() : YAML::Node(YAML::NodeType::Null);
}

}  // namespace emo
