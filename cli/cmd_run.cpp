// emo run RECIPE: run a recipe's steps in order, reusing each step whose command,
// settings, input hashes and emo version are unchanged.
#include "cli/common.h"
#include "cli/recipe_steps.h"
#include "core/util/error.h"
#include "core/util/log.h"
#include "core/util/shell.h"
#include "eval/report.h"
#include "recipes/reference.h"

namespace emo::cli {

namespace {

struct RunOpts {
  std::string recipe, workdir, from, only;
  std::vector<std::string> sets, inputs;
  bool dry_run = false, force = false, json = false, reference = false;
};

Table steps_table(const RunReport& report) {
  Table t{{"step", "command", "state", "seconds", "output"}, {}};
  for (const auto& e : report.steps)
    t.rows.push_back({e.id, e.command, e.state == StepState::WillRun || (e.state == StepState::Cached && e.reason != "cached")
                          ? std::string(step_state_name(e.state)) + ": " + e.reason
                          : step_state_name(e.state),
                      e.state == StepState::Ran ? fixed(e.seconds, 1) : "-", e.out.string()});
  return t;
}

void print_report(const RunReport& report, bool dry_run) {
  print_line(render_text(steps_table(report)));
  if (dry_run) {
    for (const auto& e : report.steps)
      if (e.state == StepState::WillRun || e.state == StepState::Cached)
        print_line(e.id + ": emo " + shell_words(e.command_line));
    return;
  }
  size_t ran = 0;
  for (const auto& e : report.steps) ran += e.state == StepState::Ran;
  if (ran == 0) print_line("every step was cached: nothing ran");
  for (const auto& o : report.outputs) print_line(o.name + ": " + o.path.string());
  for (const auto& o : report.outputs)
    if (!o.show.empty()) print_line("\n" + o.name + " (" + o.show + "):\n" + read_text_file(o.show));
}

Json report_json(const RunReport& report) {
  Json steps = Json::array();
  for (const auto& e : report.steps) steps.push_back(e.to_json());
  Json outputs = Json::object();
  for (const auto& o : report.outputs) outputs[o.name] = o.path.string();
  return {{"steps", steps}, {"outputs", outputs}};
}

}  // namespace

void add_run(CLI::App& app) {
  auto o = std::make_shared<RunOpts>();
  auto* cmd = app.add_subcommand("run", "Run a recipe: extract -> finetune -> merge pipelines with provenance and caching");
  cmd->add_option("recipe", o->recipe, "The recipe (YAML; docs/recipes.md)");
  cmd->add_option("--set", o->sets, "Change a step's setting: STEP.KEY=VALUE (repeatable)");
  cmd->add_option("--input", o->inputs, "Use another file or checkpoint for one of the recipe's inputs: NAME=PATH");
  cmd->add_option("--workdir", o->workdir, "Where step outputs go, one directory per step (default: out/<recipe name>)");
  cmd->add_flag("--dry-run", o->dry_run, "Validate, then print the plan: each step, whether it is cached, its command line");
  cmd->add_option("--from", o->from, "Run this step and every later one again, reusing the earlier steps' outputs");
  cmd->add_option("--only", o->only, "Run only this step (the steps it needs must be cached)");
  cmd->add_flag("--force", o->force, "Run the selected steps even if cached");
  cmd->add_flag("--json", o->json, "Print the run report as JSON");
  cmd->add_flag("--reference", o->reference, "Print the recipe reference (every step command and its settings) as Markdown");
  cmd->footer(
      "Writes WORKDIR/<step id> for each step (the command's output and its provenance.yaml, which names the recipe,\n"
      "the step and the cache key) and appends a line per step to WORKDIR/run.jsonl. Example:\n"
      "  emo run recipes/quickstart.yaml --set finetune-module.max-steps=20");
  cmd->callback([o] {
    StepCatalogue catalogue = step_catalogue();
    if (o->reference) {
      std::printf("%s", recipe_reference_markdown(catalogue).c_str());
      return;
    }
    if (o->recipe.empty()) fail("emo run", "RECIPE", "give the recipe file to run");
    RecipeLoadOptions lo;
    lo.variables["emo.data"] = data_root().string();
    lo.overrides = parse_sets(o->sets);
    for (const auto& [name, path] : parse_sets(o->inputs, "--input")) lo.input_paths[name] = path;
    Recipe recipe = load_recipe(o->recipe, catalogue, lo);
    RunOptions ro;
    ro.workdir = o->workdir.empty() ? fs::path("out") / recipe.name : fs::path(o->workdir);
    ro.workdir = fs::absolute(ro.workdir).lexically_normal();
    ro.dry_run = o->dry_run;
    ro.force = o->force;
    ro.from = o->from;
    ro.only = o->only;
    prepare_compute();
    size_t index = 0;
    auto on_event = [&](const StepEvent& e, bool starting) {
      if (starting) {
        ++index;
        log_info("[", index, "/", recipe.steps.size(), "] ", e.id, " (", e.command, "): ", e.reason);
        log_info("  emo ", shell_words(e.command_line));
      } else if (e.state == StepState::Cached) {
        ++index;
        log_info("[", index, "/", recipe.steps.size(), "] ", e.id, " (", e.command, "): cached");
      }
    };
    RunReport report = run_recipe(recipe, ro, run_step_in_process, on_event);
    if (o->json) print_json(report_json(report));
    else print_report(report, o->dry_run);
  });
}

EMO_REGISTER_COMMAND(120, add_run);

}  // namespace emo::cli
