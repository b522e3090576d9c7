#include "core/checkpoint/experts.h"

#include <algorithm>
#include <set>

#include "core/io/yaml.h"
#include "core/util/error.h"
#include "core/util/fs.h"

namespace emo {

std::map<int, std::vector<int64_t>> layer_id_lists(const Json& j, const std::string& file, const std::string& field) {
  auto where = [&](const std::string& key) { return field.empty() ? key : field + "." + key; };
  if (!j.is_object()) fail(file, field, "expected a map from layer index to a list of expert ids, found ", j.type_name());
  std::map<int, std::vector<int64_t>> out;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    size_t used = 0;
    int layer = -1;
    try {
      layer = std::stoi(key, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != key.size() || layer < 0) fail(file, where(key), "layer keys must be non-negative integers");
    if (out.count(layer)) fail(file, where(key), "layer ", layer, " listed twice");
    if (!it.value().is_array()) fail(file, where(key), "expected a list of expert ids, found ", it.value().type_name());
    std::vector<int64_t>& ids = out[layer];
    std::set<int64_t> seen;
    for (const auto& v : it.value()) {
      if (!v.is_number_integer()) fail(file, where(key), "expert ids must be integers, found ", v.dump());
      int64_t id = v.get<int64_t>();
      if (!seen.insert(id).second) fail(file, where(key), "expert ", id, " listed twice");
      ids.push_back(id);
    }
  }
  return out;
}

Json layer_id_lists_json(const std::map<int, std::vector<int64_t>>& lists) {
  Json j = Json::object();
  for (const auto& [layer, ids] : lists) j[std::to_string(layer)] = ids;
  return j;
}

ExpertSelection ExpertSelection::from_json(const Json& j, const std::string& file) {
  ExpertSelection s;
  s.kept = layer_id_lists(j, file, "");
  for (auto& [layer, ids] : s.kept) std::sort(ids.begin(), ids.end());
  return s;
}

ExpertSelection ExpertSelection::load(const std::string& path) {
  std::string text = read_text_file(path);
  size_t first = text.find_first_not_of(" \t\r\n");
  Json j = first != std::string::npos && text[first] == '{' ? parse_json(text, path)
                                                            : yaml_to_json(load_yaml_text(text, path), path);
  return from_json(j, path);
}

Json ExpertSelection::to_json() const { return layer_id_lists_json(kept); }

void ExpertSelection::save(const std::string& path) const { write_file_atomic(path, to_json().dump(2) + "\n"); }

void ExpertSelection::validate(const ModelConfig& config, const std::string& file) const {
  auto specs = config.layers();
  for (const auto& [layer, ids] : kept) {
    std::string where = std::to_string(layer);
    if (layer >= int(specs.size()))
      fail(file, where, "layer ", layer, " out of range: the model has ", specs.size(), " layers");
    const LayerSpec& s = specs[size_t(layer)];
    if (s.dense()) fail(file, where, "layer ", layer, " is a dense layer: it has no experts to choose");
    if (ids.empty()) fail(file, where, "keeps no routed expert");
    for (int64_t id : ids) {
      if (id < 0 || id >= s.num_experts)
        fail(file, where, "expert id ", id, " out of range: layer ", layer, " has experts 0..", s.num_experts - 1);
      if (id >= s.num_routed())
        fail(file, where, "expert ", id, " is a shared expert (always kept); list routed experts only (0..",
             s.num_routed() - 1, ")");
    }
  }
}

std::vector<int64_t> ExpertSelection::routed_kept(const ModelConfig& config, int layer) const {
  auto it = kept.find(layer);
  if (it != kept.end()) return it->second;
  std::vector<int64_t> all;
  auto specs = config.layers();
  for (int64_t e = 0; e < specs[size_t(layer)].num_routed(); ++e) all.push_back(e);
  return all;
}

}  // namespace emo
