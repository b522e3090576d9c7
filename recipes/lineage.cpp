#include "recipes/lineage.h"

#include <set>

#include "core/checkpoint/checkpoint.h"
#include "core/checkpoint/provenance.h"
#include "core/io/sha256.h"
#include "core/util/error.h"
#include "recipes/runner.h"

namespace emo {

namespace {

std::string text_of(const YAML::Node& n, const char* key) {
  return n[key] && n[key].IsScalar() ? n[key].Scalar() : "";
}

// The provenance document describing PATH, and the file it names when a step wrote a file.
YAML::Node provenance_doc(const fs::path& path, std::string* output_file) {
  std::error_code ec;
  fs::path dir = fs::is_directory(path, ec) ? path : path.parent_path();
  auto prov = Provenance::load(dir);
  if (!prov) fail(path.string(), kProvenanceFile, "missing: emo did not make this (or it was copied without it)");
  std::string file = text_of(prov->extra, "output_file");
  if (!fs::is_directory(path, ec) && file != path.filename().string())
    fail(path.string(), kProvenanceFile, "the provenance beside it describes another output");
  if (output_file) *output_file = file;
  return prov->to_yaml();
}

LineageNode node_from(const YAML::Node doc, const std::string& role, const std::string& path, const std::string& hash) {
  LineageNode n;
  n.role = role;
  n.path = path;
  n.hash = hash;
  if (!doc || doc.IsNull()) return n;
  n.command = text_of(doc, "command");
  n.finished = text_of(doc, "finished");
  if (n.hash.empty()) n.hash = text_of(doc, "output_hash");
  const YAML::Node extra = doc["extra"];
  if (extra && extra.IsMap() && extra["recipe"] && extra["recipe"].IsMap())
    n.recipe_step = text_of(extra["recipe"], "name") + "/" + text_of(extra["recipe"], "step");
  const YAML::Node parents = doc["parents"];
  if (const YAML::Node inputs = doc["inputs"])
    for (const auto& in : inputs) {
      std::string h = text_of(in, "hash");
      YAML::Node parent = parents && parents[h] ? parents[h] : YAML::Node();
      n.inputs.push_back(node_from(parent, text_of(in, "role"), text_of(in, "path"), h));
    }
  return n;
}

std::string short_hash(const std::string& h) {
  size_t colon = h.find(':');
  return colon == std::string::npos ? h.substr(0, 12) : h.substr(colon + 1, 12);
}

void format_node(const LineageNode& n, const std::string& indent, bool last, bool root, std::set<std::string>& seen,
                 std::string& out) {
  std::string line = root ? "" : indent + (last ? "└─ " : "├─ ");
  if (!n.role.empty()) line += n.role + ": ";
  line += n.command.empty() ? std::string("(root)") : n.command;
  line += "  " + short_hash(n.hash);
  if (!n.recipe_step.empty()) line += "  [" + n.recipe_step + "]";
  line += "  " + n.path;
  bool repeat = !n.command.empty() && !n.inputs.empty() && seen.count(n.hash);
  if (repeat) line += "  (its inputs are shown above)";
  out += line + "\n";
  if (repeat) return;
  seen.insert(n.hash);
  std::string child_indent = root ? "" : indent + (last ? "   " : "│  ");
  for (size_t i = 0; i < n.inputs.size(); ++i)
    format_node(n.inputs[i], child_indent, i + 1 == n.inputs.size(), false, seen, out);
}

}  // namespace

LineageNode lineage_of(const fs::path& path) {
  YAML::Node doc = provenance_doc(path, nullptr);
  return node_from(doc, "", fs::absolute(path).lexically_normal().string(), "");
}

std::string format_lineage(const LineageNode& root) {
  std::set<std::string> seen;
  std::string out;
  format_node(root, "", true, true, seen, out);
  return out;
}

Json lineage_json(const LineageNode& n) {
  Json j = {{"role", n.role}, {"command", n.command}, {"hash", n.hash}, {"path", n.path}};
  if (!n.recipe_step.empty()) j["recipe_step"] = n.recipe_step;
  if (!n.finished.empty()) j["finished"] = n.finished;
  Json inputs = Json::array();
  for (const auto& i : n.inputs) inputs.push_back(lineage_json(i));
  j["inputs"] = inputs;
  return j;
}

VerifyResult verify_output(const fs::path& path) {
  std::string output_file;
  YAML::Node doc = provenance_doc(path, &output_file);
  std::error_code ec;
  fs::path dir = fs::is_directory(path, ec) ? path : path.parent_path();
  VerifyResult r;
  r.recorded = text_of(doc, "output_hash");
  if (!output_file.empty()) {
    r.path = dir / output_file;
    r.kind = "file";
  } else {
    r.path = dir;
    r.kind = fs::exists(dir / kConfigFile, ec) ? "checkpoint" : "directory";
  }
  r.actual = hash_path(r.path, /*recompute=*/true);
  return r;
}

}  // namespace emo
