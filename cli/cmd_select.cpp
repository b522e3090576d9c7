// emo select: choose a module's experts (an experts file) from routing statistics.
#include <cmath>

#include "cli/surgery_flags.h"
#include "core/checkpoint/content_hash.h"
#include "core/util/error.h"
#include "core/util/log.h"
#include "eval/svg_chart.h"
#include "surgery/stability.h"
#include "surgery/extract.h"

namespace emo::cli {

namespace {

// A task's statistics, from --stats NAME=FILE or collected from --data NAME=FILE.
struct Task {
  std::string name;
  RouteStats stats;
};

std::string task_name(const std::string& flag, const std::string& text) {
  auto [name, value] = split_named(text);
  if (name.empty() || value.empty()) fail(flag, text, "with several tasks, name each one: NAME=FILE");
  return name;
}

// --weight NAME=W and --and-not NAME, applied to the tasks by name.
std::vector<TaskScores> task_scores(const std::vector<Task>& tasks, const TaskFlags& flags) {
  std::vector<TaskScores> out;
  for (const auto& t : tasks) out.push_back({t.name, 1.0, &t.stats, false});
  auto find = [&](const std::string& flag, const std::string& name) -> TaskScores& {
    for (auto& t : out)
      if (t.name == name) return t;
    fail(flag, name, "no task of this name (tasks are named by --data NAME=FILE or --stats NAME=FILE)");
  };
  for (const auto& w : flags.weights) {
    auto [name, weight] = parse_weight(w);
    find("--weight", name).weight = weight;
  }
  for (const auto& n : flags.and_not) find("--and-not", n).avoid = true;
  return out;
}

// Routes 1, 2, 4, ... examples, one line per size on the terminal.
StabilityCurve run_stability(LoadedModel& m, const RoutedExamples& ex, const ModuleRequest& req, const ExampleFlags& flags,
                             double threshold, int patience) {
  CollectOptions co;
  co.batch = flags.batch;
  return stability_curve(*m.model, ex.tokens, req, {}, threshold, patience, co, [](const StabilityPoint& p) {
    if (std::isnan(p.jaccard)) log_info("stability: ", p.examples, " example(s), ", p.tokens, " tokens");
    else log_info("stability: ", p.examples, " examples, ", p.tokens, " tokens, Jaccard with the previous size ", p.jaccard);
  });
}

// The curve: pooled and per-layer similarity against examples (log2 axis), the threshold dashed.
std::string stability_svg(const StabilityCurve& curve) {
  LineChart chart;
  chart.key = "stability";
  chart.title = "Selection stability: Jaccard similarity with the previous number of examples";
  chart.x_label = "examples routed";
  chart.y_label = "Jaccard similarity";
  chart.log2_x = true;
  ChartSeries pooled{"all layers", {}, {}};
  std::map<int, ChartSeries> layers;
  for (const auto& p : curve.points) {
    if (std::isnan(p.jaccard)) continue;
    pooled.x.push_back(double(p.examples)), pooled.y.push_back(p.jaccard);
    for (const auto& [l, j] : p.jaccard_per_layer) {
      auto& s = layers[l];
      s.name = cat("layer ", l);
      s.x.push_back(double(p.examples)), s.y.push_back(j);
    }
  }
  chart.series.push_back(pooled);
  for (auto& [l, s] : layers) chart.series.push_back(s);
  chart.references.push_back({cat("threshold ", curve.threshold), curve.threshold});
  return render_svg({chart}, chart.title);
}

}  // namespace

void add_select(CLI::App& app) {
  struct Opts {
    std::string model, out, method = "router-prob", experts, device = "auto", tokenizer, report, chart;
    ExampleFlags examples;
    BudgetFlags budget;
    TaskFlags tasks;
    bool exclude = false, json = false, stability = false;
    double threshold = 0.9;
    int patience = 1;
    uint64_t seed = 0;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("select", "Choose a module's experts from routing statistics; write an experts file");
  cmd->add_option("--model", o->model, "Checkpoint directory");
  cmd->add_option("--stats", o->tasks.stats,
                  "Statistics from `emo route` (instead of --data); repeat as NAME=FILE for several tasks");
  o->examples.add(cmd, true);
  cmd->add_option("--method", o->method, "Selection method (`--method help` lists them)");
  o->budget.add(cmd);
  o->tasks.add(cmd);
  cmd->add_flag("--exclude", o->exclude, "Keep every expert except the selected ones (switch a capability off)");
  cmd->add_option("--seed", o->seed, "Seed of the random method");
  cmd->add_option("--out", o->out, "Experts file to write (JSON: layer -> kept routed expert ids)");
  cmd->add_option("--report", o->report, "Also write the selection report (JSON)");
  cmd->add_flag("--stability", o->stability,
                "Route the first 1, 2, 4, ... examples of --data, choose the module at each size, and stop when "
                "successive selections' Jaccard similarity reaches --threshold; writes the last size's module");
  cmd->add_option("--threshold", o->threshold, "With --stability: the pooled Jaccard similarity that stops it")
      ->check(parsed_by(
          [](const std::string& t) {
            if (!(std::stod(t) > 0 && std::stod(t) <= 1)) fail("--threshold", t, "must be in (0, 1]");
          },
          "J"));
  cmd->add_option("--patience", o->patience, "With --stability: stop after this many successive sizes at the threshold")
      ->check(parsed_by(
          [](const std::string& t) {
            if (std::stoll(t) < 1) fail("--patience", t, "must be at least 1");
          },
          "N"));
  cmd->add_option("--chart", o->chart, "With --stability: the similarity curve as SVG (default: OUT.stability.svg)");
  cmd->add_option("--tokenizer", o->tokenizer, "tokenizer.json (default: the model's)");
  cmd->add_option("--device", o->device, "auto, cpu or cuda");
  cmd->add_flag("--json", o->json, "Print the report as JSON");
  cmd->footer("Writes OUT, an experts file usable with --experts by extract, eval, generate and logits (with --stability\n"
              "also the curve's SVG, and the report's \"stability\" entry). Examples:\n"
              "  emo select --model out/tiny --data data/gsm8k/train.jsonl --limit 1 --method router-prob --keep 4 "
              "--out math.experts.json\n"
              "  emo select --model out/tiny --stats math=math.safetensors --stats code=code.safetensors --weight math=2 "
              "--keep-fraction 0.25 --out math-code.experts.json");
  cmd->callback([o] {
    if (o->method == "help") {
      std::fputs(methods_help().c_str(), stdout);
      return;
    }
    if (o->out.empty()) fail("emo select", "--out", "give the experts file to write");
    if (o->model.empty()) fail("emo select", "--model", "give the model the experts belong to");
    auto write_selection = [&](const ModuleChoice& choice) {
      choice.selection.save(o->out);
      if (!o->report.empty()) write_file_atomic(o->report, choice.report.dump(2) + "\n");
      if (o->json) print_json(choice.report);
      else print_line(cat("wrote ", o->out, " (", o->method, ", module top-k ", choice.report["module_top_k"].get<int64_t>(), ")"));
    };
    const SelectionMethod& method = find_selection_method(o->method);
    ModuleRequest req{o->method, o->budget.request(), o->exclude, o->seed, o->tasks.compose};
    std::optional<LoadedModel> m;
    Checkpoint ck = Checkpoint::open(o->model);
    std::string model_hash;
    std::optional<RouteStats> stats;
    std::optional<RoutedExamples> ex;
    std::vector<Task> tasks;  // several tasks; the single-task path below otherwise
    auto& st = o->tasks.stats;
    auto& data = o->examples.tasks;
    const bool single = data.size() + st.size() <= 1 && !any_named(data) && !any_named(st);
    if (single && !data.empty()) o->examples.source.path = data[0];
    auto ensure_model = [&] {
      if (!m) m = load_model(o->model, "", o->device, o->tokenizer), model_hash = parent_content_hash(*m->checkpoint, false);
    };
    if (o->stability) {
      if (!single || !st.empty() || data.empty())
        fail("--stability", "--data", "routes growing numbers of one task's examples: give one --data FILE");
      ensure_model();
      ex = read_examples(o->examples, *m);
      StabilityCurve curve = run_stability(*m, *ex, req, o->examples, o->threshold, o->patience);
      ModuleChoice choice = curve.points.back().choice;
      choice.report["stability"] = curve.to_json();
      std::string chart = o->chart.empty() ? fs::path(o->out).replace_extension(".stability.svg").string() : o->chart;
      write_file_atomic(chart, stability_svg(curve));
      write_selection(choice);
      return;
    }
    if (single) {
      if (!o->tasks.weights.empty() || !o->tasks.and_not.empty())
        fail(o->tasks.weights.empty() ? "--and-not" : "--weight", "",
             "names a task: give several tasks as --data NAME=FILE (or --stats NAME=FILE)");
      if (!st.empty()) {
        stats = RouteStats::load(st[0]);
        model_hash = parent_content_hash(ck, false);
        check_stats_model(*stats, model_hash, ck.config(), st[0]);
      }
      if ((method.needs_stats() && !stats) || method.needs_forward()) {
        ensure_model();
        ex = read_examples(o->examples, *m);
        if (method.needs_stats()) stats = collect_with_progress(*m, model_hash, *ex, o->examples, nullptr);
      }
    } else {
      model_hash = parent_content_hash(ck, false);
      for (const auto& text : st) {
        std::string name = task_name("--stats", text);
        tasks.push_back({name, RouteStats::load(split_named(text).second)});
        check_stats_model(tasks.back().stats, model_hash, ck.config(), split_named(text).second);
      }
      for (const auto& text : data) {
        std::string name = task_name("--data", text);
        ensure_model();
        ExampleFlags one = o->examples;
        one.source.path = split_named(text).second;
        RoutedExamples task_ex = read_examples(one, *m);
        tasks.push_back({name, collect_with_progress(*m, model_hash, task_ex, one, nullptr)});
      }
    }
    SelectionSources src;
    src.stats = stats ? &*stats : nullptr;
    src.model = m ? m->model.get() : nullptr;
    src.examples = ex ? &ex->tokens : nullptr;
    src.batch = o->examples.batch;
    src.tasks = task_scores(tasks, o->tasks);
    std::optional<ModuleBytes> sizes;
    if (req.budget.max_bytes) src.bytes = &sizes.emplace(module_bytes(ck));
    write_selection(choose_module(ck.config(), req, src));
  });
}

EMO_REGISTER_COMMAND(85, add_select);

}  // namespace emo::cli
