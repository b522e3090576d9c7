// emo eval pareto: quality against memory (eval/pareto.h): a model's modules beside a
// baseline's and beside models trained from scratch at a module's memory.
#include "cli/common.h"
#include "cli/surgery_flags.h"
#include "core/util/log.h"
#include "eval/pareto.h"

namespace emo::cli {

namespace {

// --baseline and --scratch: NAME=DIR, or DIR (named `fallback`, or the directory's name).
std::vector<ParetoModel> named_models(const std::vector<std::string>& values, const std::string& fallback) {
  std::vector<ParetoModel> out;
  for (const auto& v : values) {
    auto [name, dir] = split_named(v);
    if (name.empty()) name = fallback.empty() ? fs::path(dir).filename().string() : fallback;
    out.push_back({name, dir});
  }
  return out;
}

}  // namespace

void add_eval_pareto(CLI::App* eval) {
  struct Opts {
    ParetoRequest request;
    std::vector<std::string> baselines, scratch;
    std::string corpus, device = "auto", out;
    bool no_whole_split = false, no_random = false, force = false, json = false;
  };
  auto o = std::make_shared<Opts>();
  o->request.model.name = "emo";
  auto* cmd = eval->add_subcommand(
      "pareto", "Quality vs memory: a model's modules against a baseline's and against models trained from scratch");
  cmd->add_option("--model", o->request.model.dir, "Checkpoint directory of the model whose modules are measured")
      ->required();
  cmd->add_option("--name", o->request.model.name, "Its label in the table and chart (default emo)");
  cmd->add_option("--baseline", o->baselines,
                  "NAME=DIR: a full model whose modules are chosen the same way, e.g. standard=out/standard "
                  "(repeatable)");
  cmd->add_option("--scratch", o->scratch,
                  "KIND=DIR: a model trained from scratch at a module's memory; models of one KIND form one line, "
                  "e.g. \"standard MoE\"=out/moe-8 (repeatable)");
  cmd->add_option("--keep-fraction", o->request.fractions,
                  "Budgets: fractions of each layer's experts, shared included (the full model is 100%)")
      ->delimiter(',');
  cmd->add_option("--method", o->request.method, "Selection method reading routing statistics (default router-prob)");
  cmd->add_option("--example-docs", o->request.example_docs,
                  "Documents per domain choosing the few-example module (default 1; 0: none)");
  cmd->add_option("--example-min-tokens", o->request.example_min_tokens,
                  "An example document's least length in tokens (default 128)");
  cmd->add_flag("--no-whole-split", o->no_whole_split, "Skip the module chosen from the domain's whole split");
  cmd->add_flag("--no-random", o->no_random, "Skip the random modules");
  cmd->add_option("--seed", o->request.seed, "Seed of the random modules");
  cmd->add_option("--corpus", o->corpus,
                  "Corpus split, JSONL(.gz) of {text, domain} (default: the shipped valid split)");
  cmd->add_option("--ppl-limit", o->request.docs_per_domain, "Scored documents per domain (0: all but the examples)");
  cmd->add_option("--window", o->request.ppl.window, "Perplexity window in tokens");
  cmd->add_option("--batch", o->request.ppl.batch, "Windows per forward pass");
  cmd->add_option("--device", o->device, "auto, cpu or cuda");
  cmd->add_option("--out", o->out, "Write pareto.json, pareto.md and pareto.svg into this new directory")->required();
  cmd->add_flag("--force", o->force, "Replace --out if it exists");
  cmd->add_flag("--json", o->json, "Print pareto.json instead of the table");
  cmd->footer(
      "Writes --out/pareto.json (every point: series, experts kept, parameters, bytes, perplexity per domain and\n"
      "their mean), --out/pareto.md (how it was made, per budget the module against the from-scratch model of\n"
      "the nearest memory, the table) and --out/pareto.svg (mean perplexity against weight bytes, one line per\n"
      "series); prints the table. Nothing else is written: modules are evaluated masked. Example:\n"
      "  emo eval pareto --model out/emo --baseline standard=out/standard --scratch \"standard MoE\"=out/moe-8 \\\n"
      "      --scratch dense=out/dense --keep-fraction 0.125,0.25,0.5 --out runs/pareto");
  cmd->callback([o] {
    ParetoRequest& r = o->request;
    r.baselines = named_models(o->baselines, "");
    r.scratch = named_models(o->scratch, "from scratch");
    r.whole_split = !o->no_whole_split;
    r.random = !o->no_random;
    r.docs = ppl_docs_for(o->corpus, 0);
    r.load = load_options_for(o->device);
    check_pareto_request(r);
    AtomicDir out(o->out, o->force);  // an existing --out fails now, not after the run
    prepare_compute();
    ParetoResult result = run_pareto(r, [](size_t done, size_t total, const std::string& what) {
      log_info("eval pareto [", done, "/", total, "]: ", what);
    });
    Json j = pareto_json(r, result);
    j["command"] = globals().argv;
    write_file_atomic(out / "pareto.json", j.dump(2) + "\n");
    write_file_atomic(out / "pareto.md", pareto_markdown(r, result));
    write_file_atomic(out / "pareto.svg", render_svg({pareto_chart(result)}, "emo eval pareto: " + r.model.dir));
    out.commit();
    if (o->json)
      print_json(j);
    else
      std::fputs(render_text(pareto_table(result)).c_str(), stdout);
  });
}

}  // namespace emo::cli
