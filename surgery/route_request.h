// emo route as one call: route task examples through a model (optionally restricted to a
// module) and write the routing statistics file `emo select` and `emo extract` read. emo
// route's flags and a recipe route step's settings are route_request_spec()'s rows.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/io/json.h"
#include "core/util/fields.h"
#include "core/util/fs.h"
#include "surgery/examples.h"

namespace emo {

struct RouteRequest {
  fs::path model;
  ExampleRequest examples;
  fs::path out;        // the statistics file (.safetensors), written atomically
  fs::path tokenizer;  // "": the model's
  fs::path experts;    // route inside this module of the model ("": every expert)
  std::string device = "auto";
  bool verify_hash = false;  // recompute the model's content hash instead of trusting its provenance
};

struct RouteResult {
  fs::path out;
  int64_t examples = 0, tokens = 0;
  std::string model_hash, examples_hash;
  Json top_experts;  // per MoE layer, its five experts of highest mean router probability
  Json to_json() const;
};

// progress(done, total) in tokens routed.
RouteResult run_route(const RouteRequest& request, const std::function<void(uint64_t, uint64_t)>& progress = {});

const RequestSpec<RouteRequest>& route_request_spec();

}  // namespace emo
