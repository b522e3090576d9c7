#include "eval/suite_request.h"

#include <algorithm>
#include <optional>

#include "core/checkpoint/content_hash.h"
#include "core/model/generate.h"
#include "core/model/loaded.h"
#include "core/text/dataset.h"
#include "core/text/gsm8k.h"
#include "core/util/error.h"
#include "core/util/log.h"
#include "core/util/registry.h"
#include "eval/gsm8k_request.h"
#include "surgery/module.h"
#include "surgery/request_fields.h"

namespace emo {

namespace {

std::string file_stem(const std::string& path) {
  std::string s = fs::path(path).filename().string();
  for (const std::string e : {".gz", ".jsonl", ".json"})
    if (s.size() > e.size() && s.compare(s.size() - e.size(), e.size(), e) == 0) s.resize(s.size() - e.size());
  return s;
}

// ---- the tasks, read (and checked) before any model loads ------------------------------

std::vector<TextDoc> ppl_docs(const EvalTaskData& d, const fs::path& data_root) {
  return corpus_docs(d.corpus.empty() ? corpus_split_path(data_root, "valid").string() : d.corpus, d.ppl_limit);
}

// GSM8K items and shots; `shots_flag` names the flag in an error.
void add_gsm8k_task(SuiteTasks& tasks, const EvalTaskData& d, const fs::path& data_root, const std::string& shots_flag) {
  std::string described;
  tasks.gsm8k_items = gsm8k_items_for(d.gsm8k_data, d.gsm8k_split, data_root, described);
  keep_first(tasks.gsm8k_items, d.gsm8k_limit);
  tasks.gsm8k.shots = d.shots < 0 ? gsm8k_paper_shots() : int(d.shots);
  if (tasks.gsm8k.shots > gsm8k_max_shots())
    fail(shots_flag, std::to_string(tasks.gsm8k.shots), "more shots than the ", gsm8k_max_shots(),
         " STD:GSM8k exemplars");
  tasks.gsm8k.max_new_tokens = int(d.max_new_tokens);
}

// One multiple-choice task; `shots` < 0 means 5 with a few-shot file, else 0. Every
// prompt is built once here, so too few few-shot examples fail before a model loads.
SuiteMcTask mc_task_for(const std::string& path, const std::string& fewshot_path, const std::string& template_name,
                        int64_t shots, size_t limit, int64_t batch) {
  SuiteMcTask t;
  t.path = path;
  t.name = file_stem(path);
  t.items = read_mc_jsonl(path);
  keep_first(t.items, limit);
  if (!fewshot_path.empty()) {
    t.fewshot_path = fewshot_path;
    t.fewshot = read_mc_jsonl(fewshot_path);
  }
  t.options.prompt.template_name = template_name;
  t.options.prompt.shots = shots >= 0 ? int(shots) : (t.fewshot.empty() ? 0 : 5);
  t.options.batch = batch;
  for (const auto& it : t.items) mc_context(it, t.fewshot, t.options.prompt, t.fewshot_path);
  return t;
}

SuiteTasks suite_tasks(const EvalSuiteRequest& r) {
  const EvalTaskData& d = r.data;
  if (!d.mc_fewshot.empty() && d.mc_fewshot.size() != d.mc.size())
    fail("--mc-fewshot", "", "give one few-shot file per --mc file (", d.mc.size(), "); got ", d.mc_fewshot.size());
  SuiteTasks tasks;
  if (!r.no_ppl) {
    tasks.ppl_docs = ppl_docs(d, r.data_root);
    tasks.ppl.window = d.window;
    tasks.ppl.pool = d.pool;
    tasks.ppl.batch = std::max<int64_t>(1, r.batch / 2);
  }
  if (!r.no_gsm8k) {
    add_gsm8k_task(tasks, d, r.data_root, "--shots");
    tasks.gsm8k.batch = r.batch;
    tasks.gsm8k_generate = r.generate;
  }
  for (size_t i = 0; i < d.mc.size(); ++i)
    tasks.mc.push_back(
        mc_task_for(d.mc[i], d.mc_fewshot.empty() ? "" : d.mc_fewshot[i], d.mc_template, d.mc_shots, d.mc_limit, r.batch));
  return tasks;
}

bool wants(const std::vector<std::string>& tasks, const std::string& task) {
  return std::find(tasks.begin(), tasks.end(), task) != tasks.end();
}

SuiteTasks sweep_tasks(const EvalSweepRequest& r, const std::vector<std::string>& wanted) {
  const EvalTaskData& d = r.data;
  const int64_t batch = r.examples.batch;
  if (wants(wanted, "mc") && d.mc.empty()) fail("--tasks", "mc", "give the multiple-choice files with --mc FILE ...");
  SuiteTasks t;
  if (wants(wanted, "ppl")) {
    t.ppl_docs = ppl_docs(d, r.data_root);
    t.ppl.window = d.window;
    t.ppl.batch = batch;
  }
  if (wants(wanted, "gsm8k") || wants(wanted, "gsm8k-generate")) {
    add_gsm8k_task(t, d, r.data_root, "--gsm8k-shots");
    t.gsm8k.batch = batch;
    t.gsm8k_generate = wants(wanted, "gsm8k-generate");
  }
  for (const auto& path : d.mc) t.mc.push_back(mc_task_for(path, "", "rc", 0, d.mc_limit, batch));
  return t;
}

// What the selection read (nothing for the random method).
Json examples_record(const ExampleRequest& e, const RoutedExamples* ex) {
  return {{"data", ex ? Json(e.source.path) : Json(nullptr)},
          {"format", ex ? ex->examples.format : e.source.format},
          {"limit", e.source.limit},
          {"examples_hash", ex ? Json(ex->examples.set_hash) : Json(nullptr)}};
}

// sweep.md: a title, what the columns mean, the table, and the chart beside it.
std::string sweep_markdown(const std::string& model, const SweepRequest& req, const std::string& dtype,
                           const Table& t) {
  return "# Budget sweep: " + req.method + (req.random_baseline ? " vs random" : "") + "\n\nModel `" + model +
         "`; experts kept per layer, shared ones included; memory = the module's weights in " + dtype + ".\n\n" +
         render_markdown(t) + "\n![quality vs experts kept](sweep.svg)\n";
}

}  // namespace

EvalReport run_eval_suite(const EvalSuiteRequest& r, const std::function<void(const std::string&)>& on_column) {
  if (!r.names.empty() && r.names.size() != r.modules.size() + 1)
    fail("--names", "", "give ", r.modules.size() + 1, " names (the full model, then each module); got ", r.names.size());
  SuiteTasks tasks = suite_tasks(r);
  std::vector<std::string> names;
  std::vector<Json> columns;
  LoadedModel full = load_model(r.model.string(), r.experts.string(), r.device, r.tokenizer.string());
  auto column = [&](const std::string& name, Model& model, const Tokenizer& tok, const RoutingControl* routing) {
    if (on_column) on_column(name);
    names.push_back(name);
    columns.push_back(run_suite(model, tok, routing, tasks));
  };
  column(r.names.empty() ? "full" : r.names[0], *full.model, *full.tokenizer, routing_of(full));
  for (size_t i = 0; i < r.modules.size(); ++i) {
    const std::string& mod = r.modules[i];
    std::string name = r.names.empty() ? file_stem(fs::path(mod).lexically_normal().string()) : r.names[i + 1];
    std::error_code ec;
    if (fs::is_directory(mod, ec)) {
      LoadedModel m = load_model(mod, "", r.device, r.tokenizer.string());
      column(name, *m.model, *m.tokenizer, nullptr);
    } else {
      ExpertSelection sel = ExpertSelection::load(mod);
      sel.validate(full.model->config(), mod);
      RoutingControl rc = routing_for(sel, full.model->config());
      column(name, *full.model, *full.tokenizer, &rc);
    }
  }
  EvalReport report;
  Json& j = report.json;
  j = eval_header("suite", r.model.string(), r.experts.string(), r.command_line);
  j["columns"] = Json::array();
  for (size_t i = 0; i < names.size(); ++i) {
    Json c = columns[i];
    c["name"] = names[i];
    c["source"] = i == 0 ? r.model.string() : r.modules[i - 1];
    j["columns"].push_back(c);
  }
  report.table = suite_table(names, columns);
  if (!r.out.empty()) {
    AtomicDir out(r.out, r.overwrite);
    write_file_atomic(out / "suite.json", j.dump(2) + "\n");
    write_file_atomic(out / "suite.md", render_markdown(report.table));
    write_file_atomic(out / "suite.txt", render_text(report.table));
    out.commit();
  }
  return report;
}

EvalReport run_eval_sweep(const EvalSweepRequest& r, const SweepProgress& progress) {
  std::vector<std::string> wanted = r.tasks;
  if (!r.data.mc.empty() && !wants(wanted, "mc")) wanted.push_back("mc");
  SuiteTasks tasks = sweep_tasks(r, wanted);
  // Budgets and method are checked on the config before the weights load.
  check_sweep_request(Checkpoint::open(r.model.string()).config(), r.sweep);
  AtomicDir out(r.out, r.overwrite);  // an existing OUT fails now, not after the sweep
  LoadedModel m = load_model(r.model.string(), "", r.device, r.tokenizer.string());
  const SelectionMethod& method = find_selection_method(r.sweep.method);
  std::optional<RoutedExamples> ex;
  std::optional<RouteStats> stats;
  if (method.needs_stats() || method.needs_forward()) ex = read_routed_examples(r.examples, *m.model, *m.tokenizer);
  if (method.needs_stats()) {
    CollectOptions co;
    co.batch = r.examples.batch;
    co.progress = [&](int64_t done, int64_t total) {
      if (progress.route) progress.route("route", uint64_t(done), uint64_t(total));
    };
    stats = route_example_request(*m.model, parent_content_hash(*m.checkpoint, false), *ex, r.examples, co);
  }
  SelectionSources src;
  src.stats = stats ? &*stats : nullptr;
  src.model = m.model.get();
  src.examples = ex ? &ex->tokens : nullptr;
  src.batch = r.examples.batch;
  src.on_step = progress.selecting;
  SweepResult result = run_sweep(*m.model, *m.tokenizer, r.sweep, src, tasks, m.checkpoint->main_dtype(), progress.point);
  const std::string dtype = dtype_name(m.checkpoint->main_dtype());
  EvalReport report;
  Json& j = report.json;
  j = eval_header("sweep", r.model.string(), "", r.command_line);
  j.erase("experts");
  j["examples"] = examples_record(r.examples, ex ? &*ex : nullptr);
  j["tasks"] = wanted;
  j["storage_dtype"] = dtype;
  j.update(sweep_json(r.sweep, result));
  report.table = sweep_table(result);
  write_file_atomic(out / "sweep.json", j.dump(2) + "\n");
  write_file_atomic(out / "sweep.md", sweep_markdown(r.model.string(), r.sweep, dtype, report.table));
  write_file_atomic(out / "sweep.svg", render_svg(sweep_charts(result), "emo eval sweep: " + r.model.string()));
  out.commit();
  return report;
}

namespace {

using K = FieldSpec::Kind;
using Values = std::vector<std::string>;

// A row that sets a member of the task data.
template <class R, class T>
Field<R> data_field(FieldSpec spec, T EvalTaskData::*member) {
  Field<EvalTaskData> f = member_field(std::move(spec), member);
  return {f.spec, [set = f.set](R& r, const Values& v) { set(r.data, v); }};
}

// Where the GSM8K items come from: the same three rows for suite and sweep.
template <class R>
void append_gsm8k_source(std::vector<Field<R>>& fields) {
  for (auto f : {data_field<R>(field("gsm8k-data", K::String, "A GSM8K JSONL (default: the shipped valid split)").reads(),
                               &EvalTaskData::gsm8k_data),
                 data_field<R>(field("gsm8k-split", K::String, "Without --gsm8k-data: train or valid")
                                   .one_of({"train", "valid"}),
                               &EvalTaskData::gsm8k_split),
                 data_field<R>(field("gsm8k-limit", K::Int, "Only the first N GSM8K items (0: all)").count(),
                               &EvalTaskData::gsm8k_limit)})
    fields.push_back(f);
}

template <class R>
Field<R> list_field(FieldSpec spec, std::vector<std::string> R::*member) {
  const bool split = spec.delimiter != 0;
  return {std::move(spec), [member, split](R& r, const Values& v) { r.*member = split ? split_items(v) : v; }};
}

template <class R>
Field<R> data_list(FieldSpec spec, std::vector<std::string> EvalTaskData::*member) {
  return {std::move(spec), [member](R& r, const Values& v) { r.data.*member = v; }};
}

RequestSpec<EvalSuiteRequest> make_suite_spec() {
  using R = EvalSuiteRequest;
  RequestSpec<R> s;
  s.command = "eval suite";
  s.summary = "Perplexity per domain, GSM8K and multiple choice; model and modules side by side";
  s.footer =
      "Writes --out/suite.{json,md,txt} when --out is given; prints the table. Example:\n"
      "  emo eval suite --model out/emo --modules math.json code.json out/math-module --mc arc_easy.jsonl";
  s.fields = {
      member_field(field("model", K::String, "Checkpoint directory of the full model (first column)").must().reads(),
                   &R::model),
      list_field(field("modules", K::List,
                       "More columns: an experts file (the full model restricted to it) or a checkpoint directory "
                       "(an extracted module, a merged model)")
                     .reads(),
                 &R::modules),
      list_field(field("names", K::List, "Column names (default: full, then each module's file or directory name)"),
                 &R::names),
      data_field<R>(field("corpus", K::String, "Perplexity corpus, JSONL(.gz) with domains (default: the shipped valid split)")
                        .reads(),
                    &EvalTaskData::corpus),
      data_field<R>(field("ppl-limit", K::Int, "Documents per domain (0: all)").count(), &EvalTaskData::ppl_limit),
      data_field<R>(field("window", K::Int, "Perplexity window in tokens"), &EvalTaskData::window),
      data_field<R>(field("pool", K::Int, "Perplexity inside document pools of N routed experts (as eval ppl --pool)")
                        .count(),
                    &EvalTaskData::pool),
      member_field(field("no-ppl", K::Bool, "Skip perplexity"), &R::no_ppl),
  };
  append_gsm8k_source(s.fields);
  for (auto f : {
      data_field<R>(field("shots", K::Int, "GSM8K exemplars (default 8)"), &EvalTaskData::shots),
      member_field(field("generate", K::Bool, "Also GSM8K greedy generation accuracy"), &R::generate),
      data_field<R>(field("max-new-tokens", K::Int, "With --generate"), &EvalTaskData::max_new_tokens),
      member_field(field("no-gsm8k", K::Bool, "Skip GSM8K"), &R::no_gsm8k),
      data_list<R>(field("mc", K::List, "Multiple-choice JSONL files (one row each)").reads(), &EvalTaskData::mc),
      data_list<R>(field("mc-fewshot", K::List, "Few-shot files, one per --mc file, in the same order").reads(),
                   &EvalTaskData::mc_fewshot),
      data_field<R>(field("mc-shots", K::Int, "Few-shot examples (default: 5 with --mc-fewshot, else 0)"),
                    &EvalTaskData::mc_shots),
      data_field<R>(field("mc-template", K::String, "rc or plain").one_of({"rc", "plain"}), &EvalTaskData::mc_template),
      data_field<R>(field("mc-limit", K::Int, "Only the first N questions of each file (0: all)").count(),
                    &EvalTaskData::mc_limit),
      member_field(field("batch", K::Int, "Requests per forward pass"), &R::batch),
      member_field(field("tokenizer", K::String, "tokenizer.json (default: each model's)").reads(), &R::tokenizer),
      member_field(field("format", K::String, entries_help("What to print:", report_formats()))
                       .one_of(entry_names(report_formats())),
                   &R::format),
      member_field(field("out", K::String, "Write suite.json, suite.md and suite.txt into this new directory")
                       .caller_owned(),
                   &R::out),
      member_field(field("force", K::Bool, "Replace --out if it exists").caller_owned(), &R::overwrite),
      member_field(experts_field(), &R::experts),
      member_field(device_field(), &R::device),
  })
    s.fields.push_back(f);
  return s;
}

RequestSpec<EvalSweepRequest> make_sweep_spec() {
  using R = EvalSweepRequest;
  RequestSpec<R> s;
  s.command = "eval sweep";
  s.summary = "Quality vs experts kept: a module per budget, evaluated masked, against a random baseline";
  s.footer =
      "Writes --out/sweep.json (every point: experts kept, parameters, bytes, metrics, the kept experts and the\n"
      "full task results), --out/sweep.md (the table) and --out/sweep.svg (one line chart per metric: quality vs\n"
      "experts kept, selected vs random, the full model dashed); prints the table. No module is written: each\n"
      "point is the full model with routing restricted to the module's experts. Example:\n"
      "  emo eval sweep --model out/emo --data data/gsm8k/train.jsonl --limit 1 --method router-prob \\\n"
      "      --keep 8,16,32,64,128 --random --tasks ppl,gsm8k --gsm8k-limit 100 --out runs/sweep";
  s.fields = {member_field(field("model", K::String, "Checkpoint directory of the full model").must().reads(), &R::model)};
  append_fields(s.fields, example_fields(), &R::examples);
  for (auto& f : s.fields) {  // the same rows, said for a sweep
    if (f.spec.key == "batch") f.spec.help = "Examples (routing) and requests (evaluation) per forward pass";
    if (f.spec.key == "shots") f.spec.help = "GSM8K selection examples: exemplars before each (evaluation: --gsm8k-shots)";
  }
  for (auto f : {
           Field<R>{field("method", K::String, "Selection method (`emo select --method help` lists them)"),
                    [](R& r, const Values& v) { r.sweep.method = field_text("method", v); }},
           Field<R>{field("keep", K::List, "Budgets: experts kept per layer, shared ones included, e.g. 8,16,32,64,128")
                        .must()
                        .comma_list()
                        .checked(checked_by([](const std::string& t) {
                          for (const auto& item : split_items({t})) field_int("keep", {item});
                        })),
                    [](R& r, const Values& v) {
                      r.sweep.keep.clear();
                      for (const auto& item : split_items(v)) r.sweep.keep.push_back(field_int("keep", {item}));
                    }},
           Field<R>{field("random", K::Bool, "Also a seeded random module at every budget (the baseline)"),
                    [](R& r, const Values&) { r.sweep.random_baseline = true; }},
           Field<R>{field("seed", K::Int, "Seed of the random modules").count(),
                    [](R& r, const Values& v) { r.sweep.seed = field_count("seed", v); }},
           list_field(field("tasks", K::List, "Comma list of ppl, gsm8k, gsm8k-generate, mc (default ppl,gsm8k)")
                          .comma_list()
                          .one_of({"ppl", "gsm8k", "gsm8k-generate", "mc"}),
                      &R::tasks),
           data_field<R>(field("ppl-data", K::String,
                               "Perplexity corpus, JSONL(.gz) of {text, domain} (default: the shipped valid split)")
                             .reads(),
                         &EvalTaskData::corpus),
           data_field<R>(field("ppl-limit", K::Int, "Documents per domain (0: all)").count(), &EvalTaskData::ppl_limit),
           data_field<R>(field("window", K::Int, "Perplexity window in tokens"), &EvalTaskData::window),
       })
    s.fields.push_back(f);
  append_gsm8k_source(s.fields);
  for (auto f : {
           data_field<R>(field("gsm8k-shots", K::Int, "GSM8K exemplars in the evaluation prompt, 0-8 (default 8)"),
                         &EvalTaskData::shots),
           data_field<R>(field("max-new-tokens", K::Int, "gsm8k-generate: at most this many new tokens"),
                         &EvalTaskData::max_new_tokens),
           data_list<R>(field("mc", K::List, "Multiple-choice JSONL files, 0-shot RC (adds the mc task)").reads(),
                        &EvalTaskData::mc),
           data_field<R>(field("mc-limit", K::Int, "Only the first N questions of each file (0: all)").count(),
                         &EvalTaskData::mc_limit),
           member_field(tokenizer_field(), &R::tokenizer),
           member_field(device_field(), &R::device),
           member_field(field("out", K::String, "Write sweep.json, sweep.md and sweep.svg into this new directory")
                            .must()
                            .caller_owned(),
                        &R::out),
           member_field(field("force", K::Bool, "Replace --out if it exists").caller_owned(), &R::overwrite),
       })
    s.fields.push_back(f);
  return s;
}

}  // namespace

const RequestSpec<EvalSuiteRequest>& eval_suite_request_spec() { return built_once<EvalSuiteRequest, make_suite_spec>(); }

const RequestSpec<EvalSweepRequest>& eval_sweep_request_spec() { return built_once<EvalSweepRequest, make_sweep_spec>(); }

}  // namespace emo
