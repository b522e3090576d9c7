#include "surgery/route_request.h"

#include <algorithm>

#include "core/checkpoint/content_hash.h"
#include "core/model/loaded.h"
#include "surgery/module.h"
#include "surgery/request_fields.h"

namespace emo {

Json RouteResult::to_json() const {
  return {{"out", out.string()},   {"examples", examples},           {"tokens", tokens},
          {"model_hash", model_hash}, {"examples_hash", examples_hash}, {"top_experts_by_router_prob", top_experts}};
}

namespace {

// Per MoE layer, the experts of highest mean router probability (at most five), for a glance.
Json top_experts(const RouteStats& s) {
  Json top = Json::object();
  for (size_t l = 0; l < s.layers.size(); ++l) {
    if (!s.layers[l].moe) continue;
    auto best = std::get<1>(s.mean_prob(int(l)).topk(std::min<int64_t>(5, s.layers[l].prob_sum.size(0))));
    top[std::to_string(l)] = std::vector<int64_t>(best.data_ptr<int64_t>(), best.data_ptr<int64_t>() + best.numel());
  }
  return top;
}

}  // namespace

RouteResult run_route(const RouteRequest& r, const std::function<void(uint64_t, uint64_t)>& progress) {
  LoadedModel m = load_model(r.model.string(), r.experts.string(), r.device, r.tokenizer.string());
  RouteResult result;
  result.model_hash = parent_content_hash(*m.checkpoint, r.verify_hash);
  RoutedExamples ex = read_routed_examples(r.examples, *m.model, *m.tokenizer);
  CollectOptions co;
  co.batch = r.examples.batch;
  co.routing = routing_of(m);
  co.progress = [&](int64_t done, int64_t total) {
    if (progress) progress(uint64_t(done), uint64_t(total));
  };
  RouteStats s = route_example_request(*m.model, result.model_hash, ex, r.examples, co);
  if (m.restricted) s.settings["experts"] = m.experts.to_json();
  s.save(r.out.string());
  result.out = r.out;
  result.examples = s.examples;
  result.tokens = s.tokens;
  result.examples_hash = s.examples_hash;
  result.top_experts = top_experts(s);
  return result;
}

namespace {

using K = FieldSpec::Kind;
RequestSpec<RouteRequest> make_spec() {
  using R = RouteRequest;
  RequestSpec<R> s;
  s.command = "route";
  s.summary = "Routing statistics of a model on task examples (per layer and expert)";
  s.footer =
      "Writes OUT: per layer and expert the summed router probability, top-k counts, gate weights and the EASY-EP and\n"
      "REAP scores, with the model hash, the examples' hash and the settings in its header. Example:\n"
      "  emo route --model out/tiny --data data/gsm8k/train.jsonl --limit 1 --shots 8 --out math.stats.safetensors";
  s.fields = {member_field(field("model", K::String, "Checkpoint directory").must().reads(), &R::model)};
  append_fields(s.fields, example_fields(), &R::examples);
  for (auto f : {
           member_field(field("out", K::String, "Statistics file to write (.safetensors)").must().caller_owned(), &R::out),
           member_field(tokenizer_field(), &R::tokenizer),
           member_field(experts_field(), &R::experts),
           member_field(device_field(), &R::device),
           member_field(field("verify-hash", K::Bool,
                              "Recompute the model's content hash instead of trusting its provenance"),
                        &R::verify_hash),
       })
    s.fields.push_back(f);
  return s;
}

}  // namespace

const RequestSpec<RouteRequest>& route_request_spec() { return built_once<RouteRequest, make_spec>(); }

}  // namespace emo
