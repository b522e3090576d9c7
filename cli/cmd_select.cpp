// emo select: choose a module's experts (an experts file) from routing statistics.
#include "cli/surgery_flags.h"
#include "core/util/error.h"
#include "surgery/extract.h"

namespace emo::cli {

void add_select(CLI::App& app) {
  struct Opts {
    std::string model, stats, out, method = "router-prob", experts, device = "auto", tokenizer, report;
    ExampleFlags examples;
    BudgetFlags budget;
    bool exclude = false, json = false;
    uint64_t seed = 0;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("select", "Choose a module's experts from routing statistics; write an experts file");
  cmd->add_option("--model", o->model, "Checkpoint directory");
  cmd->add_option("--stats", o->stats, "Statistics from `emo route` (instead of --data)");
  o->examples.add(cmd);
  cmd->add_option("--method", o->method, "Selection method (`--method help` lists them)");
  o->budget.add(cmd);
  cmd->add_flag("--exclude", o->exclude, "Keep every expert except the selected ones (switch a capability off)");
  cmd->add_option("--seed", o->seed, "Seed of the random method");
  cmd->add_option("--out", o->out, "Experts file to write (JSON: layer -> kept routed expert ids)");
  cmd->add_option("--report", o->report, "Also write the selection report (JSON)");
  cmd->add_option("--tokenizer", o->tokenizer, "tokenizer.json (default: the model's)");
  cmd->add_option("--device", o->device, "auto, cpu or cuda");
  cmd->add_flag("--json", o->json, "Print the report as JSON");
  cmd->footer("Writes OUT, an experts file usable with --experts by extract, eval, generate and logits. Example:\n"
              "  emo select --model out/tiny --data data/gsm8k/train.jsonl --limit 1 --method router-prob --keep 4 "
              "--out math.experts.json");
  cmd->callback([o] {
    if (o->method == "help") {
      std::fputs(methods_help().c_str(), stdout);
      return;
    }
    if (o->out.empty()) fail("emo select", "--out", "give the experts file to write");
    if (o->model.empty()) fail("emo select", "--model", "give the model the experts belong to");
    const SelectionMethod& method = find_selection_method(o->method);
    ModuleRequest req{o->method, o->budget.request(), o->exclude, o->seed};
    std::optional<LoadedModel> m;
    Checkpoint ck = Checkpoint::open(o->model);
    std::string model_hash;
    std::optional<RouteStats> stats;
    std::optional<RoutedExamples> ex;
    if (!o->stats.empty()) {
      stats = RouteStats::load(o->stats);
      model_hash = parent_content_hash(ck, false);
      check_stats_model(*stats, model_hash, ck.config(), o->stats);
    }
    if ((method.needs_stats() && !stats) || method.needs_forward()) {
      m = load_model(o->model, "", o->device, o->tokenizer);
      model_hash = parent_content_hash(*m->checkpoint, false);
      ex = read_examples(o->examples, *m);
      if (method.needs_stats()) stats = collect_with_progress(*m, model_hash, *ex, o->examples, nullptr);
    }
    SelectionSources src;
    src.stats = stats ? &*stats : nullptr;
    src.model = m ? m->model.get() : nullptr;
    src.examples = ex ? &ex->tokens : nullptr;
    src.batch = o->examples.batch;
    std::optional<ModuleBytes> sizes;
    if (req.budget.max_bytes) src.bytes = &sizes.emplace(module_bytes(ck));
    ModuleChoice choice = choose_module(ck.config(), req, src);
    choice.selection.save(o->out);
    if (!o->report.empty()) write_file_atomic(o->report, choice.report.dump(2) + "\n");
    if (o->json) print_json(choice.report);
    else print_line(cat("wrote ", o->out, " (", o->method, ", module top-k ", choice.report["module_top_k"].get<int64_t>(), ")"));
  });
}

EMO_REGISTER_COMMAND(85, add_select);

}  // namespace emo::cli
