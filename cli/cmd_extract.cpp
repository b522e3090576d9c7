// emo extract: a standalone checkpoint of a module (a subset of each layer's experts).
#include "cli/surgery_flags.h"
#include "core/checkpoint/content_hash.h"
#include "core/checkpoint/summary.h"
#include "core/io/sha256.h"
#include "core/io/yaml.h"
#include "core/util/error.h"
#include "core/util/progress.h"
#include "surgery/extract.h"

namespace emo::cli {

void add_extract(CLI::App& app) {
  struct Opts {
    std::string model, stats, experts, out, method, device = "auto", tokenizer;
    ExampleFlags examples;
    BudgetFlags budget;
    bool exclude = false, json = false, force = false, verify_parent = false;
    uint64_t seed = 0;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("extract", "Write a standalone checkpoint of a module: selected experts per layer");
  cmd->add_option("--model", o->model, "The full model (or a module: nested modules keep their lineage)")->required();
  o->examples.add(cmd);
  cmd->add_option("--stats", o->stats, "Statistics from `emo route` instead of --data");
  cmd->add_option("--experts", o->experts, "Keep exactly these experts (experts file) instead of selecting");
  cmd->add_option("--method", o->method, "Selection method (default router-prob; `emo select --method help`)");
  o->budget.add(cmd);
  cmd->add_flag("--exclude", o->exclude, "Keep every expert except the selected ones");
  cmd->add_option("--seed", o->seed, "Seed of the random method");
  cmd->add_option("--out", o->out, "Output checkpoint directory")->required();
  cmd->add_option("--tokenizer", o->tokenizer, "tokenizer.json (default: the model's)");
  cmd->add_option("--device", o->device, "auto, cpu or cuda");
  cmd->add_flag("--force", o->force, "Replace --out if it exists");
  cmd->add_flag("--verify-parent", o->verify_parent, "Recompute the parent's content hash instead of trusting its provenance");
  cmd->add_flag("--json", o->json, "Print the result as JSON");
  cmd->footer(
      "Writes OUT/config.json (expert counts, top-k, and emo_module: where each expert came from), the weights (layout and\n"
      "sharding like the parent), the parent's tokenizer files, provenance.yaml and README.md; with --max-bytes the\n"
      "weight files are checked to fit before anything appears. Example:\n"
      "  emo extract --model out/tiny --data data/gsm8k/train.jsonl --limit 1 --shots 8 --keep 4 --out out/math-module");
  cmd->callback([o] {
    Checkpoint parent = Checkpoint::open(o->model);
    // Refuse an existing output before any work.
    AtomicDir out(o->out, o->force);
    std::string method = o->method.empty() ? (o->experts.empty() ? "router-prob" : "explicit") : o->method;
    Provenance prov("extract");
    prov.argv = globals().argv;
    std::string parent_hash = parent_content_hash(parent, o->verify_parent);
    ExpertSelection listed;
    if (!o->experts.empty()) {
      listed = ExpertSelection::load(o->experts);
      listed.validate(parent.config(), o->experts);
      prov.add_input("experts", o->experts, hash_file(o->experts));
    }
    const SelectionMethod& m = find_selection_method(method);
    std::optional<RouteStats> stats;
    std::optional<LoadedModel> model;
    std::optional<RoutedExamples> ex;
    if (!o->stats.empty()) {
      stats = RouteStats::load(o->stats);
      check_stats_model(*stats, parent_hash, parent.config(), o->stats);
      prov.add_input("stats", o->stats, stats->file_hash);
    }
    if ((m.needs_stats() && !stats) || m.needs_forward()) {
      model = load_model(o->model, "", o->device, o->tokenizer);
      ex = read_examples(o->examples, *model);
      prov.add_input("data", o->examples.source.path, ex->examples.file_hash);
      prov.extra["examples_hash"] = ex->examples.set_hash;
      prov.extra["truncated_examples"] = ex->tokens.truncated;
      if (m.needs_stats()) stats = collect_with_progress(*model, parent_hash, *ex, o->examples, nullptr);
    }
    if (stats) prov.extra["examples_hash"] = stats->examples_hash;
    SelectionSources src;
    src.stats = stats ? &*stats : nullptr;
    src.model = model ? model->model.get() : nullptr;
    src.examples = ex ? &ex->tokens : nullptr;
    src.listed = o->experts.empty() ? nullptr : &listed;
    src.batch = o->examples.batch;
    std::optional<ModuleBytes> sizes;
    if (o->budget.request().max_bytes) src.bytes = &sizes.emplace(module_bytes(parent));
    ModuleChoice choice = choose_module(parent.config(), {method, o->budget.request(), o->exclude, o->seed}, src);
    const ExpertSelection& selection = choice.selection;
    const Json& report = choice.report;
    ExtractPlan plan = plan_extract(parent, selection, parent_hash);
    prov.add_parent("model", parent.dir(), parent_hash);
    prov.settings["method"] = method;
    prov.settings["budget"] = json_to_yaml(o->budget.request().to_json());
    prov.settings["exclude"] = o->exclude;
    prov.settings["seed"] = o->seed;
    prov.settings["examples"] = json_to_yaml({{"data", o->examples.source.path}, {"format", o->examples.source.format},
                                              {"shots", o->examples.source.shots}, {"limit", o->examples.source.limit},
                                              {"skip", o->examples.source.skip}, {"domain", o->examples.source.domain}});
    prov.extra["kept_experts"] = json_to_yaml(plan.summary()["kept_experts"]);
    prov.extra["module_top_k"] = plan.module_top_k;
    if (!report.empty()) prov.extra["selection"] = json_to_yaml(report);
    Progress bar("extract", 0, "bytes");
    prov.output_hash = write_extract(parent, plan, out.path(), [&](uint64_t done) { bar.update(done); });
    bar.finish();
    const uint64_t weights = weight_file_bytes(out.path());
    if (auto limit = o->budget.request().max_bytes; limit && weights > *limit)  // the plan's bound failed: write nothing
      fail("--max-bytes", std::to_string(*limit), "the module's weight files take ", weights,
           " bytes, over the budget (a bug in the size plan: please report it)");
    prov.finished = now_iso8601();
    prov.metrics["parameters"] = count_params(plan.config).total;
    prov.metrics["seconds"] = bar.elapsed_seconds();
    prov.metrics["weight_bytes"] = weights;
    prov.write(out.path());
    write_file_atomic(out / kModelCardFile,
                      model_card("Module of " + parent.dir().filename().string(), plan.config, prov,
                                 cat("A module cut from its parent by `emo extract` (", method, "): each MoE layer keeps the experts "
                                     "listed under `emo_module` in config.json, renumbered in their original order with the "
                                     "shared experts last.")));
    out.commit();
    Json j = {{"out", out.target().string()}, {"content_hash", prov.output_hash}, {"parent_hash", parent_hash},
              {"module", plan.summary()}, {"weight_bytes", weights}};
    if (o->json) print_json(j);
    else print_line("wrote " + out.target().string() + " (" + prov.output_hash + ")");
  });
}

EMO_REGISTER_COMMAND(90, add_extract);

}  // namespace emo::cli
