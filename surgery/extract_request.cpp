#include "surgery/extract_request.h"

#include <chrono>
#include <optional>

#include "core/checkpoint/content_hash.h"
#include "core/checkpoint/provenance.h"
#include "core/checkpoint/summary.h"
#include "core/io/sha256.h"
#include "core/io/yaml.h"
#include "core/model/loaded.h"
#include "core/util/error.h"
#include "surgery/extract.h"
#include "surgery/request_fields.h"

namespace emo {

std::string ExtractRequest::method_name() const {
  return !method.empty() ? method : experts.empty() ? "router-prob" : "explicit";
}

Json ExtractResult::to_json() const {
  return {{"out", out.string()},
          {"content_hash", content_hash},
          {"parent_hash", parent_hash},
          {"module", module},
          {"weight_bytes", weight_bytes}};
}

namespace {

// What the selection reads, loaded and checked; each input recorded in `prov`.
struct Sources {
  ExpertSelection listed;
  std::optional<RouteStats> stats;
  std::optional<LoadedModel> model;
  std::optional<RoutedExamples> examples;
};

Sources load_sources(const ExtractRequest& r, const Checkpoint& parent, const std::string& parent_hash,
                     const SelectionMethod& m, Provenance& prov, const StageProgress& progress) {
  Sources s;
  if (!r.experts.empty()) {
    s.listed = ExpertSelection::load(r.experts.string());
    s.listed.validate(parent.config(), r.experts.string());
    prov.add_input("experts", r.experts.string(), hash_file(r.experts.string()));
  }
  if (!r.stats.empty()) {
    s.stats = RouteStats::load(r.stats.string());
    check_stats_model(*s.stats, parent_hash, parent.config(), r.stats.string());
    prov.add_input("stats", r.stats.string(), s.stats->file_hash);
  }
  if ((m.needs_stats() && !s.stats) || m.needs_forward()) {
    s.model = load_model(r.model.string(), "", r.device, r.tokenizer.string());
    s.examples = read_routed_examples(r.examples, *s.model->model, *s.model->tokenizer);
    prov.add_input("data", r.examples.source.path, s.examples->examples.file_hash);
    prov.extra["examples_hash"] = s.examples->examples.set_hash;
    prov.extra["truncated_examples"] = s.examples->tokens.truncated;
    if (m.needs_stats()) {
      CollectOptions co;
      co.batch = r.examples.batch;
      co.progress = [&](int64_t done, int64_t total) {
        if (progress) progress("route", uint64_t(done), uint64_t(total));
      };
      s.stats = route_example_request(*s.model->model, parent_hash, *s.examples, r.examples, co);
    }
  }
  if (s.stats) prov.extra["examples_hash"] = s.stats->examples_hash;
  return s;
}

void record_settings(const ExtractRequest& r, const ExtractPlan& plan, const Json& report, Provenance& prov) {
  const ExampleSource& src = r.examples.source;
  prov.settings["method"] = r.method_name();
  prov.settings["budget"] = json_to_yaml(r.budget.to_json());
  prov.settings["exclude"] = r.exclude;
  prov.settings["seed"] = r.seed;
  prov.settings["examples"] = json_to_yaml({{"data", src.path}, {"format", src.format}, {"shots", src.shots},
                                            {"limit", src.limit}, {"skip", src.skip}, {"domain", src.domain}});
  prov.extra["kept_experts"] = json_to_yaml(plan.summary()["kept_experts"]);
  prov.extra["module_top_k"] = plan.module_top_k;
  if (!report.empty()) prov.extra["selection"] = json_to_yaml(report);
}

}  // namespace

ExtractResult run_extract(const ExtractRequest& r, const StageProgress& progress) {
  Checkpoint parent = Checkpoint::open(r.model.string());
  AtomicDir out(r.out, r.overwrite);  // an existing OUT is refused before any work
  const std::string method = r.method_name();
  Provenance prov("extract");
  prov.argv = r.command_line;
  ExtractResult result;
  result.parent_hash = parent_content_hash(parent, r.verify_parent);
  const SelectionMethod& m = find_selection_method(method);
  Sources s = load_sources(r, parent, result.parent_hash, m, prov, progress);
  SelectionSources src;
  src.stats = s.stats ? &*s.stats : nullptr;
  src.model = s.model ? s.model->model.get() : nullptr;
  src.examples = s.examples ? &s.examples->tokens : nullptr;
  src.listed = r.experts.empty() ? nullptr : &s.listed;
  src.batch = r.examples.batch;
  std::optional<ModuleBytes> sizes;
  if (r.budget.max_bytes) src.bytes = &sizes.emplace(module_bytes(parent));
  ModuleChoice choice = choose_module(parent.config(), {method, r.budget, r.exclude, r.seed}, src);
  ExtractPlan plan = plan_extract(parent, choice.selection, result.parent_hash);
  prov.add_parent("model", parent.dir(), result.parent_hash);
  record_settings(r, plan, choice.report, prov);
  const auto start = std::chrono::steady_clock::now();
  prov.output_hash = write_extract(parent, plan, out.path(), [&](uint64_t done) {
    if (progress) progress("extract", done, 0);
  });
  result.weight_bytes = weight_file_bytes(out.path());
  if (auto limit = r.budget.max_bytes; limit && result.weight_bytes > *limit)  // the plan's bound failed: write nothing
    fail("--max-bytes", std::to_string(*limit), "the module's weight files take ", result.weight_bytes,
         " bytes, over the budget (a bug in the size plan: please report it)");
  prov.finished = now_iso8601();
  prov.metrics["parameters"] = count_params(plan.config).total;
  prov.metrics["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  prov.metrics["weight_bytes"] = result.weight_bytes;
  prov.write(out.path());
  write_file_atomic(out / kModelCardFile,
                    model_card("Module of " + parent.dir().filename().string(), plan.config, prov,
                               cat("A module cut from its parent by `emo extract` (", method,
                                   "): each MoE layer keeps the experts listed under `emo_module` in config.json, "
                                   "renumbered in their original order with the shared experts last.")));
  out.commit();
  result.out = out.target();
  result.content_hash = prov.output_hash;
  result.module = plan.summary();
  return result;
}

namespace {

using K = FieldSpec::Kind;
RequestSpec<ExtractRequest> make_spec() {
  using R = ExtractRequest;
  RequestSpec<R> s;
  s.command = "extract";
  s.summary = "Write a standalone checkpoint of a module: selected experts per layer";
  s.footer =
      "Writes OUT/config.json (expert counts, top-k, and emo_module: where each expert came from), the weights (layout and\n"
      "sharding like the parent), the parent's tokenizer files, provenance.yaml and README.md; with --max-bytes the\n"
      "weight files are checked to fit before anything appears. Example:\n"
      "  emo extract --model out/tiny --data data/gsm8k/train.jsonl --limit 1 --shots 8 --keep 4 --out out/math-module";
  s.fields = {member_field(
      field("model", K::String, "The full model (or a module: nested modules keep their lineage)").must().reads(),
      &R::model)};
  append_fields(s.fields, example_fields(), &R::examples);
  for (auto f : {member_field(field("stats", K::String, "Statistics from `emo route` instead of --data").reads(), &R::stats),
                 member_field(field("experts", K::String, "Keep exactly these experts (experts file) instead of selecting")
                                  .reads(),
                              &R::experts),
                 member_field(field("method", K::String, "Selection method (default router-prob; `emo select --method help`)"),
                              &R::method)})
    s.fields.push_back(f);
  append_fields(s.fields, budget_fields(), &R::budget);
  for (auto f : {
           member_field(field("exclude", K::Bool, "Keep every expert except the selected ones"), &R::exclude),
           member_field(field("seed", K::Int, "Seed of the random method").count(), &R::seed),
           member_field(field("out", K::String, "Output checkpoint directory").must().caller_owned(), &R::out),
           member_field(tokenizer_field(), &R::tokenizer),
           member_field(device_field(), &R::device),
           member_field(field("force", K::Bool, "Replace --out if it exists").caller_owned(), &R::overwrite),
           member_field(field("verify-parent", K::Bool,
                              "Recompute the parent's content hash instead of trusting its provenance"),
                        &R::verify_parent),
       })
    s.fields.push_back(f);
  return s;
}

}  // namespace

const RequestSpec<ExtractRequest>& extract_request_spec() { return built_once<ExtractRequest, make_spec>(); }

}  // namespace emo
