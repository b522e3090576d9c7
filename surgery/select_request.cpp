#include "surgery/select_request.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "core/checkpoint/content_hash.h"
#include "core/io/svg_chart.h"
#include "core/model/loaded.h"
#include "core/util/error.h"
#include "core/util/log.h"
#include "core/util/registry.h"
#include "surgery/compose.h"
#include "surgery/extract.h"
#include "surgery/request_fields.h"
#include "surgery/stability.h"

namespace emo {

int64_t SelectResult::module_top_k() const { return report.value("module_top_k", int64_t(0)); }

std::pair<std::string, double> parse_weight(const std::string& text) {
  auto [name, value] = split_named(text);
  size_t used = 0;
  double weight = 0;
  try {
    weight = std::stod(value, &used);
  } catch (const std::exception&) {
  }
  if (name.empty() || used != value.size() || !(weight > 0) || !std::isfinite(weight))
    fail("--weight", text, "expected NAME=W with W a positive number");
  return {name, weight};
}

namespace {

// A task's statistics, from --stats NAME=FILE or collected from --data NAME=FILE.
struct Task {
  std::string name;
  RouteStats stats;
};

bool any_named(const std::vector<std::string>& values) {
  return std::any_of(values.begin(), values.end(), [](const std::string& v) { return !split_named(v).first.empty(); });
}

std::string task_name(const std::string& flag, const std::string& text) {
  auto [name, value] = split_named(text);
  if (name.empty() || value.empty()) fail(flag, text, "with several tasks, name each one: NAME=FILE");
  return name;
}

// --weight NAME=W and --and-not NAME, applied to the tasks by name.
std::vector<TaskScores> task_scores(const std::vector<Task>& tasks, const SelectRequest& r) {
  std::vector<TaskScores> out;
  for (const auto& t : tasks) out.push_back({t.name, 1.0, &t.stats, false});
  auto find = [&](const std::string& flag, const std::string& name) -> TaskScores& {
    for (auto& t : out)
      if (t.name == name) return t;
    fail(flag, name, "no task of this name (tasks are named by --data NAME=FILE or --stats NAME=FILE)");
  };
  for (const auto& w : r.weights) {
    auto [name, weight] = parse_weight(w);
    find("--weight", name).weight = weight;
  }
  for (const auto& n : r.and_not) find("--and-not", n).avoid = true;
  return out;
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

// What the selection reads, loaded lazily: the model only when a method or a task routes.
class Inputs {
 public:
  Inputs(const SelectRequest& r, const SelectProgress& progress)
      : r_(r), progress_(progress), checkpoint_(Checkpoint::open(r.model.string())) {}

  const Checkpoint& checkpoint() const { return checkpoint_; }
  const std::string& model_hash() {
    if (hash_.empty()) hash_ = parent_content_hash(checkpoint_, false);
    return hash_;
  }
  LoadedModel& model() {
    if (!model_) model_ = load_model(r_.model.string(), "", r_.device, r_.tokenizer.string());
    return *model_;
  }
  RoutedExamples examples(const ExampleRequest& request) {
    return read_routed_examples(request, *model().model, *model().tokenizer);
  }
  RouteStats route(const RoutedExamples& ex, const ExampleRequest& request, const std::string& stage) {
    CollectOptions co;
    co.batch = request.batch;
    co.progress = [&](int64_t done, int64_t total) {
      if (progress_) progress_(stage, uint64_t(done), uint64_t(total));
    };
    return route_example_request(*model().model, model_hash(), ex, request, co);
  }
  RouteStats load_stats(const std::string& path) {
    RouteStats s = RouteStats::load(path);
    check_stats_model(s, model_hash(), checkpoint_.config(), path);
    return s;
  }
  Model* loaded_model() { return model_ ? model_->model.get() : nullptr; }

 private:
  const SelectRequest& r_;
  const SelectProgress& progress_;
  Checkpoint checkpoint_;
  std::string hash_;
  std::optional<LoadedModel> model_;
};

// Routes 1, 2, 4, ... examples of the one task, one log line per size.
ModuleChoice stable_choice(const SelectRequest& r, const ModuleRequest& req, Inputs& in, const ExampleRequest& one) {
  if (r.data.size() != 1 || any_named(r.data) || !r.stats.empty())
    fail("--stability", "--data", "routes growing numbers of one task's examples: give one --data FILE");
  RoutedExamples ex = in.examples(one);
  CollectOptions co;
  co.batch = one.batch;
  StabilityCurve curve = stability_curve(*in.model().model, ex.tokens, req, {}, r.threshold, int(r.patience), co,
                                         [](const StabilityPoint& p) {
                                           if (std::isnan(p.jaccard))
                                             log_info("stability: ", p.examples, " example(s), ", p.tokens, " tokens");
                                           else
                                             log_info("stability: ", p.examples, " examples, ", p.tokens,
                                                      " tokens, Jaccard with the previous size ", p.jaccard);
                                         });
  ModuleChoice choice = curve.points.back().choice;
  choice.report["stability"] = curve.to_json();
  fs::path chart = r.chart.empty() ? fs::path(r.out).replace_extension(".stability.svg") : r.chart;
  write_file_atomic(chart, stability_svg(curve));
  return choice;
}

// One task: statistics from its file, or its examples routed (and the model for a method
// that runs it).
ModuleChoice single_choice(const SelectRequest& r, const ModuleRequest& req, Inputs& in, const ExampleRequest& one) {
  if (!r.weights.empty() || !r.and_not.empty())
    fail(r.weights.empty() ? "--and-not" : "--weight", "",
         "names a task: give several tasks as --data NAME=FILE (or --stats NAME=FILE)");
  const SelectionMethod& method = find_selection_method(r.method);
  std::optional<RouteStats> stats;
  std::optional<RoutedExamples> ex;
  if (!r.stats.empty()) stats = in.load_stats(r.stats[0]);
  if ((method.needs_stats() && !stats) || method.needs_forward()) {
    ex = in.examples(one);
    if (method.needs_stats()) stats = in.route(*ex, one, "route");
  }
  SelectionSources src;
  src.stats = stats ? &*stats : nullptr;
  src.model = in.loaded_model();
  src.examples = ex ? &ex->tokens : nullptr;
  src.batch = one.batch;
  std::optional<ModuleBytes> sizes;
  if (req.budget.max_bytes) src.bytes = &sizes.emplace(module_bytes(in.checkpoint()));
  return choose_module(in.checkpoint().config(), req, src);
}

// Several named tasks, composed by the request's rule.
ModuleChoice composed_choice(const SelectRequest& r, const ModuleRequest& req, Inputs& in) {
  std::vector<Task> tasks;
  for (const auto& text : r.stats) tasks.push_back({task_name("--stats", text), in.load_stats(split_named(text).second)});
  for (const auto& text : r.data) {
    std::string name = task_name("--data", text);
    ExampleRequest one = r.examples;
    one.source.path = split_named(text).second;
    RoutedExamples ex = in.examples(one);
    tasks.push_back({name, in.route(ex, one, "route " + name)});
  }
  SelectionSources src;
  src.model = in.loaded_model();
  src.batch = r.examples.batch;
  src.tasks = task_scores(tasks, r);
  std::optional<ModuleBytes> sizes;
  if (req.budget.max_bytes) src.bytes = &sizes.emplace(module_bytes(in.checkpoint()));
  return choose_module(in.checkpoint().config(), req, src);
}

}  // namespace

SelectResult run_select(const SelectRequest& r, const SelectProgress& progress) {
  if (r.out.empty()) fail("emo select", "--out", "give the experts file to write");
  if (r.model.empty()) fail("emo select", "--model", "give the model the experts belong to");
  find_selection_method(r.method);  // an unknown method is refused before any work
  ModuleRequest req{r.method, r.budget, r.exclude, r.seed, r.compose};
  Inputs in(r, progress);
  const bool single = r.data.size() + r.stats.size() <= 1 && !any_named(r.data) && !any_named(r.stats);
  ExampleRequest one = r.examples;
  if (single && !r.data.empty()) one.source.path = r.data[0];
  ModuleChoice choice = r.stability ? stable_choice(r, req, in, one)
                        : single    ? single_choice(r, req, in, one)
                                    : composed_choice(r, req, in);
  choice.selection.save(r.out.string());
  if (!r.report.empty()) write_file_atomic(r.report, choice.report.dump(2) + "\n");
  return {r.out, r.method, choice.report};
}

namespace {

using K = FieldSpec::Kind;
using Values = std::vector<std::string>;

// A check of a number the flag's words reject: "" when `ok` holds for it.
template <class Parse, class Ok>
FieldSpec& checked_number(FieldSpec& f, Parse parse, Ok ok, const std::string& rule, const std::string& name) {
  const std::string key = f.key;
  return f.checked(checked_by([key, parse, ok, rule](const std::string& t) {
                     if (!ok(parse(key, Values{t}))) fail("--" + key, t, rule);
                   }),
                   name);
}

RequestSpec<SelectRequest> make_spec() {
  using R = SelectRequest;
  RequestSpec<R> s;
  s.command = "select";
  s.summary = "Choose a module's experts from routing statistics; write an experts file";
  s.footer =
      "Writes OUT, an experts file usable with --experts by extract, eval, generate and logits (with --stability\n"
      "also the curve's SVG, and the report's \"stability\" entry). Examples:\n"
      "  emo select --model out/tiny --data data/gsm8k/train.jsonl --limit 1 --method router-prob --keep 4 "
      "--out math.experts.json\n"
      "  emo select --model out/tiny --stats math=math.safetensors --stats code=code.safetensors --weight math=2 "
      "--keep-fraction 0.25 --out math-code.experts.json";
  FieldSpec stats = field("stats", K::List,
                          "Statistics from `emo route` (instead of --data); repeat as NAME=FILE for several tasks")
                        .reads();
  stats.named_path = true;
  FieldSpec data = field("data", K::List,
                         "Task examples: JSONL(.gz) of texts, GSM8K {question, answer}, or the corpus; repeat as "
                         "NAME=FILE for several tasks in one module")
                       .reads();
  data.named_path = true;
  s.fields = {member_field(field("model", K::String, "Checkpoint directory").reads(), &R::model),
              {stats, [](R& r, const Values& v) { r.stats = v; }}};
  append_fields(s.fields, example_fields(), &R::examples);
  for (auto& f : s.fields)  // several tasks: --data repeats
    if (f.spec.key == "data") f = {data, [](R& r, const Values& v) { r.data = v; }};
  s.fields.push_back(member_field(field("method", K::String, "Selection method (`--method help` lists them)"), &R::method));
  append_fields(s.fields, budget_fields(), &R::budget);
  FieldSpec threshold = field("threshold", K::Float, "With --stability: the pooled Jaccard similarity that stops it");
  checked_number(threshold, field_float, [](double v) { return v > 0 && v <= 1; }, "must be in (0, 1]", "J");
  FieldSpec patience =
      field("patience", K::Int, "With --stability: stop after this many successive sizes at the threshold");
  checked_number(patience, field_int, [](int64_t v) { return v >= 1; }, "must be at least 1", "N");
  for (auto f : {
           Field<R>{field("weight", K::List, "NAME=W: a task's weight when several are composed (default 1)")
                        .checked(checked_by([](const std::string& t) { parse_weight(t); }), "NAME=W"),
                    [](R& r, const Values& v) { r.weights = v; }},
           member_field(field("compose", K::String, entries_help("How several tasks make one module:", compose_rules()))
                            .one_of(entry_names(compose_rules())),
                        &R::compose),
           Field<R>{field("and-not", K::List, "NAME: leave out the experts this task's own module keeps (switch it off)"),
                    [](R& r, const Values& v) { r.and_not = v; }},
           member_field(field("exclude", K::Bool, "Keep every expert except the selected ones (switch a capability off)"),
                        &R::exclude),
           member_field(field("seed", K::Int, "Seed of the random method").count(), &R::seed),
           member_field(field("out", K::String, "Experts file to write (JSON: layer -> kept routed expert ids)")
                            .caller_owned(),
                        &R::out),
           member_field(field("report", K::String, "Also write the selection report (JSON)").caller_owned(), &R::report),
           member_field(field("stability", K::Bool,
                              "Route the first 1, 2, 4, ... examples of --data, choose the module at each size, and stop "
                              "when successive selections' Jaccard similarity reaches --threshold; writes the last "
                              "size's module"),
                        &R::stability),
           member_field(threshold, &R::threshold),
           member_field(patience, &R::patience),
           member_field(field("chart", K::String, "With --stability: the similarity curve as SVG (default: OUT.stability.svg)"),
                        &R::chart),
           member_field(tokenizer_field(), &R::tokenizer),
           member_field(device_field(), &R::device),
       })
    s.fields.push_back(f);
  return s;
}

}  // namespace

const RequestSpec<SelectRequest>& select_request_spec() { return built_once<SelectRequest, make_spec>(); }

}  // namespace emo
