// The routing-statistics file that `emo route` writes and `select`/`extract --stats` read:
// safetensors with, per MoE layer l, the five sums of route_stats.h as float64 (counts
// int64) tensors `layers.<l>.<stat>`, and a JSON header in __metadata__.emo_route_stats
// (version, tokens, examples, num_layers, moe_layers, model/examples/data hashes,
// settings). Such files travel between machines, so they are read here without LibTorch,
// every field typed and every shape checked, and fuzzed (tests/fuzz/fuzz_route_stats).
#pragma once

#include <array>
#include <map>
#include <memory>
#include <string>

#include "core/io/json.h"
#include "core/io/safetensors.h"

namespace emo {

inline constexpr int kRouteStatsVersion = 1;
inline constexpr int kRouteStatCount = 5;
inline constexpr std::array<const char*, kRouteStatCount> kRouteStatNames = {"prob_sum", "select_count", "gate_sum",
                                                                             "easy_ep", "reap_sum"};
inline constexpr const char* kRouteStatsHeaderKey = "emo_route_stats";

struct RouteStatsFile {
  int64_t tokens = 0, examples = 0;
  std::string model_hash, examples_hash, data_hash;
  Json settings = Json::object();
  size_t num_layers = 0;
  // MoE layer -> its five statistics (views into the mapped file), each of shape [E].
  std::map<size_t, std::array<TensorView, kRouteStatCount>> moe_layers;
  std::shared_ptr<const SafetensorsFile> file;  // keeps the views' mapping alive
};

// Opens and validates; emo::Error naming the file and the field otherwise.
RouteStatsFile read_route_stats_file(const std::string& path);

// The header that read_route_stats_file expects, for writers.
Json route_stats_header(int64_t tokens, int64_t examples, size_t num_layers, const Json& moe_layers,
                        const std::string& model_hash, const std::string& examples_hash, const std::string& data_hash,
                        const Json& settings);

}  // namespace emo
