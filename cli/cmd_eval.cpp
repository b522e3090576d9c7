// emo eval: the evaluation protocols (docs/eval.md).
//   ppl    per-domain loss, perplexity and bits per byte of a corpus
//   gsm8k  the paper's GSM8K: bits per byte of the normalised solution (default), or
//          greedy generation with answer extraction (--generate)
//   mc     multiple choice in OLMES' RC format (ARC, MMLU, HellaSwag, ... as JSONL)
//   suite  all of them, for a model and its modules / merged models side by side
//   sweep  quality against the number of experts kept: a module chosen per budget,
//          evaluated masked, with a random baseline; sweep.json, sweep.md, sweep.svg
#include <algorithm>
#include <map>
#include <optional>

#include "cli/common.h"
#include "cli/surgery_flags.h"
#include "core/checkpoint/content_hash.h"
#include "core/io/jsonl.h"
#include "core/model/generate.h"
#include "core/util/error.h"
#include "core/util/log.h"
#include "core/util/progress.h"
#include "core/util/version.h"
#include "eval/gsm8k_eval.h"
#include "eval/multiple_choice.h"
#include "eval/perplexity.h"
#include "eval/report.h"
#include "eval/suite.h"
#include "eval/sweep.h"
#include "surgery/extract.h"

namespace emo::cli {

void add_eval_pareto(CLI::App* eval);  // cli/cmd_eval_pareto.cpp

namespace {

// The record every summary starts with: what was evaluated, how.
Json run_header(const std::string& task, const std::string& model, const std::string& experts) {
  Json argv = globals().argv;
  return {{"task", task},
          {"model", model},
          {"experts", experts.empty() ? Json(nullptr) : Json(experts)},
          {"emo_version", emo_version()},
          {"command", argv}};
}

// DIR/examples.jsonl + DIR/summary.json, appearing together (AtomicDir).
void write_eval_dir(const std::string& dir, bool force, const std::vector<Json>& examples, const Json& summary) {
  AtomicDir out(dir, force);
  std::string lines;
  for (const auto& e : examples) lines += e.dump() + "\n";
  write_file_atomic(out / "examples.jsonl", lines);
  write_file_atomic(out / "summary.json", summary.dump(2) + "\n");
  out.commit();
}

template <typename T>
void keep_first(std::vector<T>& v, size_t limit) {
  if (limit && v.size() > limit) v.resize(limit);
}

std::string file_stem(const std::string& path) {
  std::string s = fs::path(path).filename().string();
  for (const char* ext : {".gz", ".jsonl", ".json"}) {
    std::string e = ext;
    if (s.size() > e.size() && s.compare(s.size() - e.size(), e.size(), e) == 0) s.resize(s.size() - e.size());
  }
  return s;
}

// The GSM8K items of --data FILE, or of the shipped train file's corpus split.
std::vector<GsmSplitItem> gsm8k_items_for(const std::string& data, const std::string& split, std::string& described) {
  if (!data.empty()) {
    described = data;
    return gsm8k_file_items(data);
  }
  if (split != "train" && split != "valid") fail("--split", split, "expected train or valid");
  fs::path gsm = data_root() / "gsm8k" / "train.jsonl";
  fs::path corpus = corpus_split_file(split);
  described = gsm.string() + " ∩ " + corpus.string();
  return gsm8k_split_items(gsm.string(), corpus.string());
}

std::function<void(size_t, size_t)> progress_to(Progress& bar) {
  return [&bar](size_t done, size_t) { bar.update(done); };
}

// ---- the tasks of suite and sweep, read (and checked) before any model loads ----------


// GSM8K items and shots of a suite; `shots` < 0 means the paper's 8.
void add_gsm8k_task(SuiteTasks& tasks, const std::string& data, const std::string& split, size_t limit, int shots,
                    const std::string& shots_flag) {
  std::string described;
  tasks.gsm8k_items = gsm8k_items_for(data, split, described);
  keep_first(tasks.gsm8k_items, limit);
  tasks.gsm8k.shots = shots < 0 ? gsm8k_paper_shots() : shots;
  if (tasks.gsm8k.shots > gsm8k_max_shots())
    fail(shots_flag, std::to_string(tasks.gsm8k.shots), "more shots than the ", gsm8k_max_shots(),
         " STD:GSM8k exemplars");
}

// One multiple-choice task; `shots` < 0 means 5 with a few-shot file, else 0. Every
// prompt is built once here, so too few few-shot examples fail before a model loads.
SuiteMcTask mc_task_for(const std::string& path, const std::string& fewshot_path, const std::string& template_name,
                        int shots, size_t limit, int64_t batch) {
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
  t.options.prompt.shots = shots >= 0 ? shots : (t.fewshot.empty() ? 0 : 5);
  t.options.batch = batch;
  for (const auto& it : t.items) mc_context(it, t.fewshot, t.options.prompt, t.fewshot_path);
  return t;
}

// ---- ppl -------------------------------------------------------------------------------

// PplOptions::pool, for eval ppl and eval suite.
constexpr const char* kPoolHelp =
    "Route each window inside a pool of N routed experts per layer, its top N by the router probability summed "
    "over the window (allenai/EMO's eval_document_expert_pool); the pool sees the whole window, so the score is "
    "not causal. 0: every token routed on its own";

void add_eval_ppl(CLI::App* eval) {
  struct Opts {
    std::string model, data, domain, experts, device = "auto", tokenizer, text_field = "text", out;
    int64_t window = 256, batch = 8, pool = 0;
    size_t limit = 0;
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = eval->add_subcommand("ppl", "Per-domain loss, perplexity and bits per byte of a JSONL(.gz) corpus");
  cmd->add_option("--model", o->model, "Checkpoint directory")->required();
  cmd->add_option("--data", o->data, "JSONL or JSONL.gz with a text field (and a domain field)")->required();
  cmd->add_option("--domain", o->domain, "Only documents of this domain");
  cmd->add_option("--text-field", o->text_field, "Field holding the text");
  cmd->add_option("--limit", o->limit, "At most this many documents");
  cmd->add_option("--window", o->window, "Tokens per scoring window");
  cmd->add_option("--batch", o->batch, "Windows per forward pass");
  cmd->add_option("--pool", o->pool, kPoolHelp)->check(CLI::NonNegativeNumber);
  cmd->add_option("--tokenizer", o->tokenizer, "tokenizer.json (default: the model's)");
  cmd->add_option("--out", o->out, "Also write the JSON result to this file");
  add_model_flags(cmd, o->experts, o->device);
  cmd->add_flag("--json", o->json, "Print JSON");
  cmd->footer(
      "Writes the result to --out if given (JSON), else only prints it. Example:\n"
      "  emo eval ppl --model out/tiny --data data/corpus/valid.jsonl.gz --domain math --limit 50");
  cmd->callback([o] {
    TextFilter f;
    f.domain = o->domain;
    f.limit = o->limit;
    f.text_field = o->text_field;
    TextDocs docs = load_text_docs(o->data, f);
    if (docs.docs.empty()) fail(o->data, "", "no documents", o->domain.empty() ? "" : " of domain " + o->domain);
    LoadedModel m = load_model(o->model, o->experts, o->device, o->tokenizer);
    PplOptions po;
    po.window = o->window;
    po.batch = o->batch;
    po.pool = o->pool;
    po.routing = routing_of(m);
    Progress bar("eval ppl", 0, "tokens");
    po.progress = [&](uint64_t done, uint64_t) { bar.update(done); };
    PplResult r = evaluate_perplexity(*m.model, *m.tokenizer, docs.docs, po);
    bar.finish();
    Json j = {{"model", o->model},
              {"data", o->data},
              {"experts", o->experts},
              {"window", o->window},
              {"pool", o->pool},
              {"tokens_per_second", r.tokens_per_second()},
              {"domains", Json::object()}};
    for (const auto& [domain, s] : r.by_domain)
      j["domains"][domain] = {{"loss", s.loss()},
                              {"perplexity", s.perplexity()},
                              {"bits_per_byte", s.bits_per_byte()},
                              {"tokens", s.tokens},
                              {"bytes", s.bytes},
                              {"documents", s.docs}};
    if (!o->out.empty()) write_file_atomic(o->out, j.dump(2) + "\n");
    if (o->json) {
      print_json(j);
      return;
    }
    print_line(cat("domain        documents     tokens    loss  perplexity  bits/byte"));
    for (const auto& [domain, s] : r.by_domain) {
      char line[160];
      std::snprintf(line, sizeof line, "%-12s %10llu %10llu %7.4f %11.3f %10.4f", domain.c_str(),
                    (unsigned long long)s.docs, (unsigned long long)s.tokens, s.loss(), s.perplexity(),
                    s.bits_per_byte());
      print_line(line);
    }
  });
}

// ---- gsm8k -----------------------------------------------------------------------------

void add_eval_gsm8k(CLI::App* eval) {
  struct Opts {
    std::string model, experts, device = "auto", tokenizer, data, split = "valid", protocol = "emo", out;
    int shots = -1, max_new_tokens = 512;
    int64_t batch = 16;
    size_t limit = 0;
    bool generate = false, json = false, force = false, no_prefix_cache = false, token_logprobs = false;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd =
      eval->add_subcommand("gsm8k", "GSM8K as the EMO paper runs it: bits per byte of the solution, or --generate");
  cmd->add_option("--model", o->model, "Checkpoint directory")->required();
  cmd->add_option("--data", o->data, "A GSM8K JSONL file ({question, answer}), e.g. the real test set");
  cmd->add_option("--split", o->split,
                  "Without --data: the shipped train items whose corpus id is in this corpus split (valid: 743 items)")
      ->check(CLI::IsMember({"train", "valid"}));
  cmd->add_option("--protocol", o->protocol,
                  "emo: bits per byte of the normalised solution (gsm8k_generation_8shot_merged); emo-perplexity: "
                  "EMO's gsm8k_perplexity_* request")
      ->check(CLI::IsMember({"emo", "emo-perplexity"}));
  cmd->add_option("--shots", o->shots, "STD:GSM8k chain-of-thought exemplars, 0-8 (default 8)");
  cmd->add_flag("--generate", o->generate, "Greedy generation and exact-match accuracy instead of bits per byte");
  cmd->add_option("--max-new-tokens", o->max_new_tokens,
                  "With --generate: at most this many new tokens (oe-eval: 512)");
  cmd->add_option("--batch", o->batch, "Items per forward pass");
  cmd->add_option("--limit", o->limit, "Only the first N items");
  cmd->add_flag("--no-prefix-cache", o->no_prefix_cache, "Run every prompt from its first token (for comparison)");
  cmd->add_flag("--token-logprobs", o->token_logprobs, "Per-example log-probability of every target token");
  cmd->add_option("--tokenizer", o->tokenizer, "tokenizer.json (default: the model's)");
  cmd->add_option("--out", o->out, "Write examples.jsonl and summary.json into this new directory");
  cmd->add_flag("--force", o->force, "Replace --out if it exists");
  add_model_flags(cmd, o->experts, o->device);
  cmd->add_flag("--json", o->json, "Print the summary as JSON");
  cmd->footer(
      "Writes --out/examples.jsonl (one record per item) and --out/summary.json when --out is given; prints\n"
      "the summary. Examples:\n"
      "  emo eval gsm8k --model out/tiny --limit 50\n"
      "  emo eval gsm8k --model out/tiny --experts math.json --data gsm8k_test.jsonl --generate --out runs/gsm8k");
  cmd->callback([o] {
    std::string described;
    std::vector<GsmSplitItem> items = gsm8k_items_for(o->data, o->split, described);
    keep_first(items, o->limit);
    Gsm8kEvalOptions go;
    go.protocol = o->protocol;
    go.shots = o->shots < 0 ? gsm8k_paper_shots() : o->shots;
    if (go.shots > gsm8k_max_shots())
      fail("--shots", std::to_string(go.shots), "more shots than the ", gsm8k_max_shots(), " STD:GSM8k exemplars");
    go.batch = o->batch;
    go.max_new_tokens = o->max_new_tokens;
    go.share_prefix = !o->no_prefix_cache;
    LoadedModel m = load_model(o->model, o->experts, o->device, o->tokenizer);
    go.routing = routing_of(m);
    Progress bar(o->generate ? "eval gsm8k generate" : "eval gsm8k", items.size(), "items");
    go.progress = progress_to(bar);
    Json summary = run_header("gsm8k", o->model, o->experts);
    summary["data"] = described;
    summary["shots"] = go.shots;
    std::vector<Json> examples;
    if (o->generate) {
      Gsm8kGenerateResult r = evaluate_gsm8k_generate(*m.model, *m.tokenizer, items, go);
      bar.finish();
      summary["protocol"] = "generate";
      summary["max_new_tokens"] = go.max_new_tokens;
      summary.update(summary_json(r));
      for (const auto& e : r.examples) examples.push_back(to_json(e));
      if (r.stats.truncated)
        log_warn(r.stats.truncated, " prompts were cut on the left to fit ", go.max_new_tokens,
                 " new tokens into the model's context");
    } else {
      Gsm8kBpbResult r = evaluate_gsm8k_bpb(*m.model, *m.tokenizer, items, go, o->token_logprobs);
      bar.finish();
      summary["protocol"] = go.protocol;
      summary.update(summary_json(r));
      for (const auto& e : r.examples) examples.push_back(to_json(e));
      if (r.stats.truncated) log_warn(r.stats.truncated, " contexts were cut on the left to fit the model's context");
    }
    if (!o->out.empty()) write_eval_dir(o->out, o->force, examples, summary);
    if (o->json) {
      print_json(summary);
      return;
    }
    if (o->generate) {
      const Json& a = summary["accuracy"];
      const Json& em = summary["exact_match"];
      print_line(cat("items             ", summary["items"].get<size_t>()));
      print_line(cat("accuracy          ", fixed(100 * a["value"].get<double>(), 2), "%  (95% CI ",
                     fixed(100 * a["ci95"][0].get<double>(), 2), "-", fixed(100 * a["ci95"][1].get<double>(), 2), ")"));
      print_line(
          cat("exact match       ", fixed(100 * em["value"].get<double>(), 2), "%  (the paper's oe-eval metric)"));
      print_line(cat("tokens/s          ", fixed(summary["tokens_per_second"].get<double>(), 1), " (generated)"));
    } else {
      print_line(cat("items             ", summary["items"].get<size_t>()));
      print_line(cat("bits per byte     ", fixed(summary["bits_per_byte"].get<double>(), 4)));
      print_line(cat("target tokens     ", summary["target_tokens"].get<uint64_t>(), " (",
                     summary["target_bytes"].get<uint64_t>(), " bytes)"));
      print_line(cat("tokens/s          ", fixed(summary["tokens_per_second"].get<double>(), 1)));
    }
  });
}

// ---- mc --------------------------------------------------------------------------------

void add_eval_mc(CLI::App* eval) {
  struct Opts {
    std::string model, experts, device = "auto", tokenizer, data, fewshot, description, out;
    std::string tmpl = "rc", primary = "acc_per_char";
    int shots = -1;
    int64_t batch = 16;
    size_t limit = 0;
    bool uncond = false, json = false, force = false, no_prefix_cache = false;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = eval->add_subcommand("mc", "Multiple choice in OLMES' RC format: log-likelihood of each choice");
  cmd->add_option("--model", o->model, "Checkpoint directory")->required();
  cmd->add_option("--data", o->data, "JSONL of {question, choices: [...], answer: index}")->required();
  cmd->add_option("--fewshot", o->fewshot, "JSONL of few-shot examples (same format; first N in file order)");
  cmd->add_option("--shots", o->shots, "Few-shot examples per prompt (default: 5 with --fewshot, else 0)");
  cmd->add_option("--template", o->tmpl, "rc: 'Question: q\\nAnswer:'; plain: the question text verbatim (HellaSwag)")
      ->check(CLI::IsMember({"rc", "plain"}));
  cmd->add_option("--description", o->description,
                  "Text before the prompt; {subject} becomes the row's subject (MMLU: 'The following are multiple "
                  "choice questions (with answers) about {subject}.\\n\\n')");
  cmd->add_flag("--uncond", o->uncond, "Also acc_uncond: subtract each choice's log-likelihood after 'Answer:' alone");
  cmd->add_option("--primary-metric", o->primary, "acc_per_char (OLMES RC), acc_raw, acc_per_token or acc_uncond")
      ->check(CLI::IsMember({"acc_raw", "acc_per_token", "acc_per_char", "acc_uncond"}));
  cmd->add_option("--batch", o->batch, "Requests (choices) per forward pass");
  cmd->add_option("--limit", o->limit, "Only the first N questions");
  cmd->add_flag("--no-prefix-cache", o->no_prefix_cache, "Run every request from its first token (for comparison)");
  cmd->add_option("--tokenizer", o->tokenizer, "tokenizer.json (default: the model's)");
  cmd->add_option("--out", o->out, "Write examples.jsonl and summary.json into this new directory");
  cmd->add_flag("--force", o->force, "Replace --out if it exists");
  add_model_flags(cmd, o->experts, o->device);
  cmd->add_flag("--json", o->json, "Print the summary as JSON");
  cmd->footer(
      "Writes --out/examples.jsonl (one record per question) and --out/summary.json when --out is given;\n"
      "prints the accuracies. Example:\n"
      "  emo eval mc --model out/tiny --data arc_easy.jsonl --fewshot arc_easy_train.jsonl --shots 5");
  cmd->callback([o] {
    std::vector<McItem> items = read_mc_jsonl(o->data);
    keep_first(items, o->limit);
    std::vector<McItem> fewshot;
    if (!o->fewshot.empty()) fewshot = read_mc_jsonl(o->fewshot);
    McOptions mo;
    mo.prompt.template_name = o->tmpl;
    mo.prompt.description = o->description;
    mo.prompt.shots = o->shots >= 0 ? o->shots : (o->fewshot.empty() ? 0 : 5);
    mo.uncond = o->uncond;
    mo.batch = o->batch;
    mo.share_prefix = !o->no_prefix_cache;
    if (o->primary == "acc_uncond" && !o->uncond) fail("--primary-metric", o->primary, "needs --uncond");
    // Build every prompt before loading the model: too few shots fails fast.
    for (const auto& it : items) mc_context(it, fewshot, mo.prompt, o->fewshot);
    LoadedModel m = load_model(o->model, o->experts, o->device, o->tokenizer);
    mo.routing = routing_of(m);
    Progress bar("eval mc", 0, "requests");
    mo.progress = progress_to(bar);
    McResult r = evaluate_mc(*m.model, *m.tokenizer, items, fewshot, mo, o->fewshot);
    bar.finish();
    Json summary = run_header("mc", o->model, o->experts);
    summary["data"] = o->data;
    summary["fewshot"] = o->fewshot.empty() ? Json(nullptr) : Json(o->fewshot);
    summary["shots"] = mo.prompt.shots;
    summary["template"] = o->tmpl;
    summary["description"] = o->description;
    summary.update(summary_json(r, o->primary));
    if (!o->out.empty()) {
      std::vector<Json> examples;
      for (const auto& e : r.examples) examples.push_back(to_json(e));
      write_eval_dir(o->out, o->force, examples, summary);
    }
    if (o->json) {
      print_json(summary);
      return;
    }
    Table t;
    t.header = {"metric", "accuracy %", "95% CI"};
    for (const char* k : {"acc_raw", "acc_per_token", "acc_per_char", "acc_uncond"}) {
      if (!summary.contains(k)) continue;
      const Json& a = summary[k];
      t.rows.push_back({std::string(k) + (o->primary == k ? " *" : ""), fixed(100 * a["value"].get<double>(), 2),
                        fixed(100 * a["ci95"][0].get<double>(), 2) + "-" + fixed(100 * a["ci95"][1].get<double>(), 2)});
    }
    std::fputs(render_text(t).c_str(), stdout);
    print_line(cat(summary["items"].get<size_t>(), " questions, ", fixed(summary["tokens_per_second"].get<double>(), 1),
                   " tokens/s; * = primary metric"));
  });
}

// ---- suite -----------------------------------------------------------------------------

void add_eval_suite(CLI::App* eval) {
  struct Opts {
    std::string model, experts, device = "auto", tokenizer, corpus, gsm8k_data, out;
    std::string gsm8k_split = "valid", mc_template = "rc", format = "text";
    std::vector<std::string> modules, names, mc, mc_fewshot;
    size_t ppl_limit = 20, gsm8k_limit = 0, mc_limit = 0;
    int64_t window = 256, batch = 16, pool = 0;
    int shots = -1, mc_shots = -1, max_new_tokens = 512;
    bool no_ppl = false, no_gsm8k = false, generate = false, force = false;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd =
      eval->add_subcommand("suite", "Perplexity per domain, GSM8K and multiple choice; model and modules side by side");
  cmd->add_option("--model", o->model, "Checkpoint directory of the full model (first column)")->required();
  cmd->add_option("--modules", o->modules,
                  "More columns: an experts file (the full model restricted to it) or a checkpoint directory "
                  "(an extracted module, a merged model)");
  cmd->add_option("--names", o->names, "Column names (default: full, then each module's file or directory name)");
  cmd->add_option("--corpus", o->corpus,
                  "Perplexity corpus, JSONL(.gz) with domains (default: the shipped valid split)");
  cmd->add_option("--ppl-limit", o->ppl_limit, "Documents per domain (0: all)");
  cmd->add_option("--window", o->window, "Perplexity window in tokens");
  cmd->add_option("--pool", o->pool, "Perplexity inside document pools of N routed experts (as eval ppl --pool)")->check(CLI::NonNegativeNumber);
  cmd->add_flag("--no-ppl", o->no_ppl, "Skip perplexity");
  cmd->add_option("--gsm8k-data", o->gsm8k_data, "A GSM8K JSONL (default: the shipped valid split)");
  cmd->add_option("--gsm8k-split", o->gsm8k_split, "Without --gsm8k-data: train or valid")
      ->check(CLI::IsMember({"train", "valid"}));
  cmd->add_option("--gsm8k-limit", o->gsm8k_limit, "Only the first N GSM8K items (0: all)");
  cmd->add_option("--shots", o->shots, "GSM8K exemplars (default 8)");
  cmd->add_flag("--generate", o->generate, "Also GSM8K greedy generation accuracy");
  cmd->add_option("--max-new-tokens", o->max_new_tokens, "With --generate");
  cmd->add_flag("--no-gsm8k", o->no_gsm8k, "Skip GSM8K");
  cmd->add_option("--mc", o->mc, "Multiple-choice JSONL files (one row each)");
  cmd->add_option("--mc-fewshot", o->mc_fewshot, "Few-shot files, one per --mc file, in the same order");
  cmd->add_option("--mc-shots", o->mc_shots, "Few-shot examples (default: 5 with --mc-fewshot, else 0)");
  cmd->add_option("--mc-template", o->mc_template, "rc or plain")->check(CLI::IsMember({"rc", "plain"}));
  cmd->add_option("--mc-limit", o->mc_limit, "Only the first N questions of each file (0: all)");
  cmd->add_option("--batch", o->batch, "Requests per forward pass");
  cmd->add_option("--tokenizer", o->tokenizer, "tokenizer.json (default: each model's)");
  cmd->add_option("--format", o->format, "What to print: text, markdown or json")
      ->check(CLI::IsMember({"text", "markdown", "json"}));
  cmd->add_option("--out", o->out, "Write suite.json, suite.md and suite.txt into this new directory");
  cmd->add_flag("--force", o->force, "Replace --out if it exists");
  add_model_flags(cmd, o->experts, o->device);
  cmd->footer(
      "Writes --out/suite.{json,md,txt} when --out is given; prints the table. Example:\n"
      "  emo eval suite --model out/emo --modules math.json code.json out/math-module --mc arc_easy.jsonl");
  cmd->callback([o] {
    if (!o->names.empty() && o->names.size() != o->modules.size() + 1)
      fail("--names", "", "give ", o->modules.size() + 1, " names (the full model, then each module); got ",
           o->names.size());
    if (!o->mc_fewshot.empty() && o->mc_fewshot.size() != o->mc.size())
      fail("--mc-fewshot", "", "give one few-shot file per --mc file (", o->mc.size(), "); got ", o->mc_fewshot.size());
    // The tasks, read once (and checked) before any model loads.
    SuiteTasks tasks;
    if (!o->no_ppl) {
      tasks.ppl_docs = ppl_docs_for(o->corpus, o->ppl_limit);
      tasks.ppl.window = o->window;
      tasks.ppl.pool = o->pool;
      tasks.ppl.batch = std::max<int64_t>(1, o->batch / 2);
    }
    if (!o->no_gsm8k) {
      add_gsm8k_task(tasks, o->gsm8k_data, o->gsm8k_split, o->gsm8k_limit, o->shots, "--shots");
      tasks.gsm8k.batch = o->batch;
      tasks.gsm8k.max_new_tokens = o->max_new_tokens;
      tasks.gsm8k_generate = o->generate;
    }
    for (size_t i = 0; i < o->mc.size(); ++i)
      tasks.mc.push_back(mc_task_for(o->mc[i], o->mc_fewshot.empty() ? "" : o->mc_fewshot[i], o->mc_template,
                                     o->mc_shots, o->mc_limit, o->batch));
    std::vector<std::string> names;
    std::vector<Json> columns;
    LoadedModel full = load_model(o->model, o->experts, o->device, o->tokenizer);
    auto column = [&](const std::string& name, Model& model, const Tokenizer& tok, const RoutingControl* routing) {
      log_info("eval suite: ", name);
      names.push_back(name);
      columns.push_back(run_suite(model, tok, routing, tasks));
    };
    column(o->names.empty() ? "full" : o->names[0], *full.model, *full.tokenizer, routing_of(full));
    for (size_t i = 0; i < o->modules.size(); ++i) {
      const std::string& mod = o->modules[i];
      std::string name = o->names.empty() ? file_stem(fs::path(mod).lexically_normal().string()) : o->names[i + 1];
      std::error_code ec;
      if (fs::is_directory(mod, ec)) {
        LoadedModel m = load_model(mod, "", o->device, o->tokenizer);
        column(name, *m.model, *m.tokenizer, nullptr);
      } else {
        ExpertSelection sel = ExpertSelection::load(mod);
        sel.validate(full.model->config(), mod);
        RoutingControl rc = routing_for(sel, full.model->config());
        column(name, *full.model, *full.tokenizer, &rc);
      }
    }
    Json j = run_header("suite", o->model, o->experts);
    j["columns"] = Json::array();
    for (size_t i = 0; i < names.size(); ++i) {
      Json c = columns[i];
      c["name"] = names[i];
      c["source"] = i == 0 ? o->model : o->modules[i - 1];
      j["columns"].push_back(c);
    }
    Table t = suite_table(names, columns);
    if (!o->out.empty()) {
      AtomicDir out(o->out, o->force);
      write_file_atomic(out / "suite.json", j.dump(2) + "\n");
      write_file_atomic(out / "suite.md", render_markdown(t));
      write_file_atomic(out / "suite.txt", render_text(t));
      out.commit();
    }
    if (o->format == "json")
      print_json(j);
    else if (o->format == "markdown")
      std::fputs(render_markdown(t).c_str(), stdout);
    else
      std::fputs(render_text(t).c_str(), stdout);
  });
}

// ---- sweep -----------------------------------------------------------------------------

// The tasks of a sweep from --tasks: ppl, gsm8k (bits per byte), gsm8k-generate (also
// accuracy), mc (each --mc file; implied by --mc).
struct SweepTaskFlags {
  std::vector<std::string> tasks = {"ppl", "gsm8k"};
  std::string ppl_data, gsm8k_data, gsm8k_split = "valid";
  std::vector<std::string> mc;
  size_t ppl_limit = 20, gsm8k_limit = 0, mc_limit = 0;
  int64_t window = 256;
  int gsm8k_shots = -1, max_new_tokens = 512;

  bool wants(const std::string& task) const { return std::find(tasks.begin(), tasks.end(), task) != tasks.end(); }

  SuiteTasks read(int64_t batch) const {
    if (wants("mc") && mc.empty()) fail("--tasks", "mc", "give the multiple-choice files with --mc FILE ...");
    SuiteTasks t;
    if (wants("ppl")) {
      t.ppl_docs = ppl_docs_for(ppl_data, ppl_limit);
      t.ppl.window = window;
      t.ppl.batch = batch;
    }
    if (wants("gsm8k") || wants("gsm8k-generate")) {
      add_gsm8k_task(t, gsm8k_data, gsm8k_split, gsm8k_limit, gsm8k_shots, "--gsm8k-shots");
      t.gsm8k.batch = batch;
      t.gsm8k.max_new_tokens = max_new_tokens;
      t.gsm8k_generate = wants("gsm8k-generate");
    }
    for (const auto& path : mc) t.mc.push_back(mc_task_for(path, "", "rc", 0, mc_limit, batch));
    return t;
  }
};

// What the selection read (nothing for the random method).
Json examples_record(const ExampleFlags& flags, const RoutedExamples* ex) {
  return {{"data", ex ? Json(flags.source.path) : Json(nullptr)},
          {"format", ex ? ex->examples.format : flags.source.format},
          {"limit", flags.source.limit},
          {"examples_hash", ex ? Json(ex->examples.set_hash) : Json(nullptr)}};
}

// sweep.md: a title, what the columns mean, the table, and the chart beside it.
std::string sweep_markdown(const std::string& model, const SweepRequest& req, const std::string& dtype,
                           const Table& t) {
  return "# Budget sweep: " + req.method + (req.random_baseline ? " vs random" : "") + "\n\nModel `" + model +
         "`; experts kept per layer, shared ones included; memory = the module's weights in " + dtype + ".\n\n" +
         render_markdown(t) + "\n![quality vs experts kept](sweep.svg)\n";
}

void add_eval_sweep(CLI::App* eval) {
  struct Opts {
    std::string model, device = "auto", tokenizer, out;
    ExampleFlags examples;
    SweepRequest request;
    SweepTaskFlags tasks;
    bool force = false, json = false;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = eval->add_subcommand(
      "sweep", "Quality vs experts kept: a module per budget, evaluated masked, against a random baseline");
  cmd->add_option("--model", o->model, "Checkpoint directory of the full model")->required();
  o->examples.add(cmd);
  cmd->get_option("--batch")->description("Examples (routing) and requests (evaluation) per forward pass");
  cmd->get_option("--shots")->description(
      "GSM8K selection examples: exemplars before each (evaluation: --gsm8k-shots)");
  cmd->add_option("--method", o->request.method, "Selection method (`emo select --method help` lists them)");
  cmd->add_option("--keep", o->request.keep,
                  "Budgets: experts kept per layer, shared ones included, e.g. 8,16,32,64,128")
      ->delimiter(',')
      ->required();
  cmd->add_flag("--random", o->request.random_baseline, "Also a seeded random module at every budget (the baseline)");
  cmd->add_option("--seed", o->request.seed, "Seed of the random modules");
  cmd->add_option("--tasks", o->tasks.tasks, "Comma list of ppl, gsm8k, gsm8k-generate, mc (default ppl,gsm8k)")
      ->delimiter(',')
      ->check(CLI::IsMember({"ppl", "gsm8k", "gsm8k-generate", "mc"}));
  cmd->add_option("--ppl-data", o->tasks.ppl_data,
                  "Perplexity corpus, JSONL(.gz) of {text, domain} (default: the shipped valid split)");
  cmd->add_option("--ppl-limit", o->tasks.ppl_limit, "Documents per domain (0: all)");
  cmd->add_option("--window", o->tasks.window, "Perplexity window in tokens");
  cmd->add_option("--gsm8k-data", o->tasks.gsm8k_data, "A GSM8K JSONL (default: the shipped valid split)");
  cmd->add_option("--gsm8k-split", o->tasks.gsm8k_split, "Without --gsm8k-data: train or valid")
      ->check(CLI::IsMember({"train", "valid"}));
  cmd->add_option("--gsm8k-limit", o->tasks.gsm8k_limit, "Only the first N GSM8K items (0: all)");
  cmd->add_option("--gsm8k-shots", o->tasks.gsm8k_shots, "GSM8K exemplars in the evaluation prompt, 0-8 (default 8)");
  cmd->add_option("--max-new-tokens", o->tasks.max_new_tokens, "gsm8k-generate: at most this many new tokens");
  cmd->add_option("--mc", o->tasks.mc, "Multiple-choice JSONL files, 0-shot RC (adds the mc task)");
  cmd->add_option("--mc-limit", o->tasks.mc_limit, "Only the first N questions of each file (0: all)");
  cmd->add_option("--tokenizer", o->tokenizer, "tokenizer.json (default: the model's)");
  cmd->add_option("--device", o->device, "auto, cpu or cuda");
  cmd->add_option("--out", o->out, "Write sweep.json, sweep.md and sweep.svg into this new directory")->required();
  cmd->add_flag("--force", o->force, "Replace --out if it exists");
  cmd->add_flag("--json", o->json, "Print sweep.json instead of the table");
  cmd->footer(
      "Writes --out/sweep.json (every point: experts kept, parameters, bytes, metrics, the kept experts and the\n"
      "full task results), --out/sweep.md (the table) and --out/sweep.svg (one line chart per metric: quality vs\n"
      "experts kept, selected vs random, the full model dashed); prints the table. No module is written: each\n"
      "point is the full model with routing restricted to the module's experts. Example:\n"
      "  emo eval sweep --model out/emo --data data/gsm8k/train.jsonl --limit 1 --method router-prob \\\n"
      "      --keep 8,16,32,64,128 --random --tasks ppl,gsm8k --gsm8k-limit 100 --out runs/sweep");
  cmd->callback([o] {
    if (!o->tasks.mc.empty() && !o->tasks.wants("mc")) o->tasks.tasks.push_back("mc");
    SuiteTasks tasks = o->tasks.read(o->examples.batch);
    // Budgets and method are checked on the config before the weights load.
    check_sweep_request(Checkpoint::open(o->model).config(), o->request);
    AtomicDir out(o->out, o->force);  // an existing --out fails now, not after the sweep
    LoadedModel m = load_model(o->model, "", o->device, o->tokenizer);
    const SelectionMethod& method = find_selection_method(o->request.method);
    std::optional<RoutedExamples> ex;
    std::optional<RouteStats> stats;
    if (method.needs_stats() || method.needs_forward()) ex = read_examples(o->examples, m);
    if (method.needs_stats())
      stats = collect_with_progress(m, parent_content_hash(*m.checkpoint, false), *ex, o->examples, nullptr);
    SelectionSources src;
    src.stats = stats ? &*stats : nullptr;
    src.model = m.model.get();
    src.examples = ex ? &ex->tokens : nullptr;
    src.batch = o->examples.batch;
    src.on_step = [](const std::string& what) { log_info("eval sweep: selecting, ", what); };
    SweepResult r = run_sweep(*m.model, *m.tokenizer, o->request, src, tasks, m.checkpoint->main_dtype(),
                              [](size_t done, size_t total, const std::string& what) {
                                log_info("eval sweep [", done + 1, "/", total, "]: ", what);
                              });
    const std::string dtype = dtype_name(m.checkpoint->main_dtype());
    Json j = run_header("sweep", o->model, "");
    j.erase("experts");
    j["examples"] = examples_record(o->examples, ex ? &*ex : nullptr);
    j["tasks"] = o->tasks.tasks;
    j["storage_dtype"] = dtype;
    j.update(sweep_json(o->request, r));
    Table t = sweep_table(r);
    write_file_atomic(out / "sweep.json", j.dump(2) + "\n");
    write_file_atomic(out / "sweep.md", sweep_markdown(o->model, o->request, dtype, t));
    write_file_atomic(out / "sweep.svg", render_svg(sweep_charts(r), "emo eval sweep: " + o->model));
    out.commit();
    if (o->json)
      print_json(j);
    else
      std::fputs(render_text(t).c_str(), stdout);
  });
}

}  // namespace

void add_eval(CLI::App& app) {
  auto* eval =
      app.add_subcommand("eval", "Evaluate a model or module: perplexity, GSM8K, multiple choice, suite, budget sweep");
  eval->require_subcommand(1);
  eval->fallthrough();
  add_eval_ppl(eval);
  add_eval_gsm8k(eval);
  add_eval_mc(eval);
  add_eval_suite(eval);
  add_eval_sweep(eval);
  add_eval_pareto(eval);
}

EMO_REGISTER_COMMAND(70, add_eval);

}  // namespace emo::cli
