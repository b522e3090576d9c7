#include "core/checkpoint/module_info.h"

#include "core/checkpoint/experts.h"
#include "core/util/error.h"

namespace emo {

Json ModuleInfo::to_json() const {
  return {{"parent_hash", parent_hash}, {"experts", layer_id_lists_json(experts)}, {"root_hash", root_hash},
          {"root_experts", layer_id_lists_json(root_experts)}};
}

std::optional<ModuleInfo> ModuleInfo::of(const ModelConfig& config) {
  if (!config.raw.contains(kModuleKey)) return std::nullopt;
  const Json& j = config.raw[kModuleKey];
  const std::string& file = config.source;
  const std::string key = kModuleKey;
  if (!j.is_object()) fail(file, key, "expected an object, found ", j.type_name());
  auto text = [&](const char* name) {
    if (!j.contains(name) || !j[name].is_string()) fail(file, key + "." + name, "missing or not a string");
    return j[name].get<std::string>();
  };
  ModuleInfo m;
  m.parent_hash = text("parent_hash");
  m.root_hash = text("root_hash");
  m.experts = layer_id_lists(j.value("experts", Json()), file, key + ".experts");
  m.root_experts = layer_id_lists(j.value("root_experts", Json()), file, key + ".root_experts");
  return m;
}

}  // namespace emo
