// Routing-statistics files (`emo route`): the safetensors container and the JSON header in
// its __metadata__ (counts, hashes, layer list) with the shapes and dtypes it promises.
// The first byte chooses what the rest is: 0 - the header JSON alone, wrapped in a valid
// file holding statistics of layers 0 and 1 with 4 experts (so mutations reach the header's
// semantics); otherwise the whole file.
#include <cstring>

#include "core/io/json.h"
#include "fuzz_util.h"
#include "surgery/route_stats_file.h"

namespace {

std::string wrap_header(const std::string& header_json) {
  using emo::Json;
  Json h = Json::object();
  h["__metadata__"] = {{"format", "emo-route-stats"}, {emo::kRouteStatsHeaderKey, header_json}};
  uint64_t offset = 0;
  for (int layer = 0; layer < 2; ++layer)
    for (int k = 0; k < emo::kRouteStatCount; ++k) {
      std::string name = "layers." + std::to_string(layer) + "." + emo::kRouteStatNames[size_t(k)];
      h[name] = {{"dtype", k == 1 ? "I64" : "F64"}, {"shape", {4}}, {"data_offsets", {offset, offset + 32}}};
      offset += 32;
    }
  // The fuzz bytes may not be UTF-8; replace what is not, as a writer of the file must.
  std::string text = h.dump(-1, ' ', false, Json::error_handler_t::replace);
  uint64_t n = text.size();
  std::string file(reinterpret_cast<const char*>(&n), 8);
  return file + text + std::string(offset, '\0');
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace emo;
  if (size == 0) return 0;
  std::string rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string bytes = data[0] == 0 ? wrap_header(rest) : rest;
  fuzz::expect_clean([&] {
    auto path = fuzz::write_input("stats.safetensors", reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    RouteStatsFile f = read_route_stats_file(path);
    for (const auto& [layer, views] : f.moe_layers)
      for (const auto& v : views) (void)v.nbytes;
  });
  return 0;
}
