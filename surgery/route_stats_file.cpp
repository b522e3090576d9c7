#include "surgery/route_stats_file.h"

#include <limits>

#include "core/util/error.h"

namespace emo {

namespace {
constexpr int64_t kMaxLayers = 100000;  // as config.json's num_hidden_layers
constexpr int64_t kMaxCount = std::numeric_limits<int64_t>::max();
}  // namespace

Json route_stats_header(int64_t tokens, int64_t examples, size_t num_layers, const Json& moe_layers,
                        const std::string& model_hash, const std::string& examples_hash, const std::string& data_hash,
                        const Json& settings) {
  return {{"version", kRouteStatsVersion}, {"tokens", tokens}, {"examples", examples}, {"num_layers", num_layers},
          {"moe_layers", moe_layers}, {"model_hash", model_hash}, {"examples_hash", examples_hash},
          {"data_hash", data_hash}, {"settings", settings}};
}

RouteStatsFile read_route_stats_file(const std::string& path) {
  RouteStatsFile s;
  s.file = SafetensorsFile::open(path);
  const std::string field = std::string("__metadata__.") + kRouteStatsHeaderKey;
  auto it = s.file->metadata().find(kRouteStatsHeaderKey);
  if (it == s.file->metadata().end()) fail(path, field, "missing: not an emo routing-statistics file");
  const Json h = parse_json(it->second, path + ": " + field);
  const std::string where = path + ": " + field;
  if (json_int(h, "version", where, 0, kMaxCount) != kRouteStatsVersion)
    fail(path, field + ".version", "unsupported version ", h["version"].dump(), " (this emo reads ", kRouteStatsVersion, ")");
  s.tokens = json_int(h, "tokens", where, 0, kMaxCount);
  s.examples = json_int(h, "examples", where, 0, kMaxCount);
  s.model_hash = json_string(h, "model_hash", where);
  s.examples_hash = json_string(h, "examples_hash", where);
  s.data_hash = json_string(h, "data_hash", where);
  s.settings = json_member(h, "settings", where);
  if (!s.settings.is_object()) fail(path, field + ".settings", "expected an object, found ", s.settings.type_name());
  s.num_layers = size_t(json_int(h, "num_layers", where, 1, kMaxLayers));
  const Json& moe = json_member(h, "moe_layers", where);
  if (!moe.is_array()) fail(path, field + ".moe_layers", "expected a list of layer indices, found ", moe.type_name());
  for (size_t i = 0; i < moe.size(); ++i) {
    const Json& l = moe[i];
    if (!l.is_number_unsigned() || l.get<uint64_t>() >= s.num_layers)
      fail(path, cat(field, ".moe_layers[", i, "]"), l.dump(), " is not a layer index below num_layers ", s.num_layers);
    size_t layer = size_t(l.get<uint64_t>());
    if (s.moe_layers.count(layer)) fail(path, cat(field, ".moe_layers[", i, "]"), "layer ", layer, " listed twice");
    auto& views = s.moe_layers[layer];
    for (int k = 0; k < kRouteStatCount; ++k) {
      std::string name = cat("layers.", layer, ".", kRouteStatNames[size_t(k)]);
      TensorView v = s.file->view(name);  // emo::Error naming the tensor when it is absent
      if (v.shape.size() != 1 || (k > 0 && v.shape != views[0].shape))
        fail(path, name, "shape ", shape_str(v.shape), ", expected ",
             k == 0 ? std::string("one dimension [E]") : shape_str(views[0].shape) + " like " + views[0].name);
      DType want = k == 1 ? DType::I64 : DType::F64;
      if (v.dtype != want) fail(path, name, "dtype ", dtype_name(v.dtype), ", expected ", dtype_name(want));
      views[size_t(k)] = std::move(v);
    }
  }
  return s;
}

}  // namespace emo
