// The experts file: which routed experts a module keeps. JSON or YAML, a map from layer
// index (a string key, "0") to the kept routed expert ids in the full model's
// numbering. Shared experts are implied (always kept); a layer not in the map keeps all
// its experts. Written by selection, read by extract, eval, generate and logits.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/checkpoint/config.h"

namespace emo {

// A map from layer index ("0", "1", ...) to a list of expert ids, as experts files and a
// module's config.json ("emo_module") write it: keys are whole non-negative integers, no
// layer or id twice. `field` prefixes the key in errors. Order of ids is kept.
std::map<int, std::vector<int64_t>> layer_id_lists(const Json& j, const std::string& file, const std::string& field);
Json layer_id_lists_json(const std::map<int, std::vector<int64_t>>& lists);

struct ExpertSelection {
  std::map<int, std::vector<int64_t>> kept;  // layer -> sorted routed ids

  static ExpertSelection load(const std::string& path);
  static ExpertSelection from_json(const Json& j, const std::string& file);
  Json to_json() const;
  void save(const std::string& path) const;

  // Every layer in range and an MoE layer, every id a routed expert of it, no repeats,
  // at least one kept: emo::Error naming the file, layer and id otherwise.
  void validate(const ModelConfig& config, const std::string& file) const;
  // Routed experts kept in `layer` (all routed ones when the layer is not listed).
  std::vector<int64_t> routed_kept(const ModelConfig& config, int layer) const;
  bool restricts(int layer) const { return kept.count(layer) != 0; }
};

}  // namespace emo
