// emo eval pareto as one call (run_pareto_report) and its fields: the command's flags and a
// recipe pareto step's settings.
#include "core/model/loaded.h"
#include "core/util/error.h"
#include "eval/pareto.h"

namespace emo {

ParetoReport run_pareto_report(ParetoRequest r,
                               const std::function<void(size_t, size_t, const std::string&)>& on_progress) {
  require(!r.corpus.empty(), "emo eval pareto", "--corpus", "give the corpus split to score");
  r.docs = corpus_docs(r.corpus, 0);
  r.load = load_options_for(r.device);
  check_pareto_request(r);
  AtomicDir out(r.out, r.overwrite);  // an existing OUT fails now, not after the run
  ParetoResult result = run_pareto(r, on_progress);
  ParetoReport report{pareto_json(r, result), pareto_table(result)};
  report.json["command"] = r.command_line;
  write_file_atomic(out / "pareto.json", report.json.dump(2) + "\n");
  write_file_atomic(out / "pareto.md", pareto_markdown(r, result));
  write_file_atomic(out / "pareto.svg", render_svg({pareto_chart(result)}, "emo eval pareto: " + r.model.dir));
  out.commit();
  return report;
}

namespace {

using K = FieldSpec::Kind;
using Values = std::vector<std::string>;

// --baseline and --scratch: NAME=DIR, or DIR (named `fallback`, or the directory's name).
std::vector<ParetoModel> named_models(const Values& values, const std::string& fallback) {
  std::vector<ParetoModel> out;
  for (const auto& v : values) {
    auto [name, dir] = split_named(v);
    if (name.empty()) name = fallback.empty() ? fs::path(dir).filename().string() : fallback;
    out.push_back({name, dir});
  }
  return out;
}

// "0.125,0.25" as one value or several: the fractions in order.
std::vector<double> fractions(const Values& values) {
  std::vector<double> out;
  for (const auto& item : split_items(values)) out.push_back(field_float("keep-fraction", {item}));
  return out;
}

FieldSpec named_input(FieldSpec f) {
  f.input_path = true;
  f.named_path = true;
  return f;
}

RequestSpec<ParetoRequest> make_spec() {
  using R = ParetoRequest;
  RequestSpec<R> s;
  s.command = "eval pareto";
  s.summary = "Quality vs memory: a model's modules against a baseline's and against models trained from scratch";
  s.footer =
      "Writes --out/pareto.json (every point: series, experts kept, parameters, bytes, perplexity per domain and\n"
      "their mean), --out/pareto.md (how it was made, per budget the module against the from-scratch model of\n"
      "the nearest memory, the table) and --out/pareto.svg (mean perplexity against weight bytes, one line per\n"
      "series); prints the table. Nothing else is written: modules are evaluated masked. Example:\n"
      "  emo eval pareto --model out/emo --baseline standard=out/standard --scratch \"standard MoE\"=out/moe-8 \\\n"
      "      --scratch dense=out/dense --keep-fraction 0.125,0.25,0.5 --out runs/pareto";
  s.fields = {
      {field("model", K::String, "Checkpoint directory of the model whose modules are measured").must().reads(),
       [](R& r, const Values& v) { r.model.dir = field_text("model", v); }},
      {field("name", K::String, "Its label in the table and chart (default emo)"),
       [](R& r, const Values& v) { r.model.name = field_text("name", v); }},
      {named_input(field("baseline", K::List,
                         "NAME=DIR: a full model whose modules are chosen the same way, e.g. standard=out/standard "
                         "(repeatable)")),
       [](R& r, const Values& v) { r.baselines = named_models(v, ""); }},
      {named_input(field("scratch", K::List,
                         "KIND=DIR: a model trained from scratch at a module's memory; models of one KIND form one "
                         "line, e.g. \"standard MoE\"=out/moe-8 (repeatable)")),
       [](R& r, const Values& v) { r.scratch = named_models(v, "from scratch"); }},
      {field("keep-fraction", K::List, "Budgets: fractions of each layer's experts, shared included (the full model is 100%)")
           .comma_list()
           .checked(checked_by([](const std::string& t) { fractions({t}); })),
       [](R& r, const Values& v) { r.fractions = fractions(v); }},
      member_field(field("method", K::String, "Selection method reading routing statistics (default router-prob)"),
                   &R::method),
      member_field(field("example-docs", K::Int, "Documents per domain choosing the few-example module (default 1; 0: none)")
                       .count(),
                   &R::example_docs),
      member_field(field("example-min-tokens", K::Int, "An example document's least length in tokens (default 128)"),
                   &R::example_min_tokens),
      {field("no-whole-split", K::Bool, "Skip the module chosen from the domain's whole split"),
       [](R& r, const Values&) { r.whole_split = false; }},
      {field("no-random", K::Bool, "Skip the random modules"), [](R& r, const Values&) { r.random = false; }},
      member_field(field("seed", K::Int, "Seed of the random modules").count(), &R::seed),
      member_field(field("corpus", K::String, "Corpus split, JSONL(.gz) of {text, domain} (default: the shipped valid split)")
                       .reads(),
                   &R::corpus),
      member_field(field("ppl-limit", K::Int, "Scored documents per domain (0: all but the examples)").count(),
                   &R::docs_per_domain),
      {field("window", K::Int, "Perplexity window in tokens"),
       [](R& r, const Values& v) { r.ppl.window = field_int("window", v); }},
      {field("batch", K::Int, "Windows per forward pass"),
       [](R& r, const Values& v) { r.ppl.batch = field_int("batch", v); }},
      member_field(device_field(), &R::device),
      member_field(field("out", K::String, "Write pareto.json, pareto.md and pareto.svg into this new directory")
                       .must()
                       .caller_owned(),
                   &R::out),
      member_field(field("force", K::Bool, "Replace --out if it exists").caller_owned(), &R::overwrite),
  };
  return s;
}

}  // namespace

const RequestSpec<ParetoRequest>& pareto_request_spec() { return built_once<ParetoRequest, make_spec>(); }

}  // namespace emo
