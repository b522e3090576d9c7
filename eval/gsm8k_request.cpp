#include "eval/gsm8k_request.h"

#include "core/model/loaded.h"
#include "core/text/dataset.h"
#include "core/text/gsm8k.h"
#include "core/util/error.h"
#include "core/util/log.h"
#include "eval/multiple_choice.h"
#include "eval/report.h"

namespace emo {

std::vector<GsmSplitItem> gsm8k_items_for(const std::string& data, const std::string& split, const fs::path& data_root,
                                          std::string& described) {
  if (!data.empty()) {
    described = data;
    return gsm8k_file_items(data);
  }
  if (split != "train" && split != "valid") fail("--split", split, "expected train or valid");
  fs::path gsm = data_root / "gsm8k" / "train.jsonl";
  fs::path corpus = corpus_split_path(data_root, split);
  described = gsm.string() + " ∩ " + corpus.string();
  return gsm8k_split_items(gsm.string(), corpus.string());
}

Json run_gsm8k(const Gsm8kRequest& r, const std::function<void(size_t, size_t)>& progress) {
  std::string described;
  std::vector<GsmSplitItem> items = gsm8k_items_for(r.data, r.split, r.data_root, described);
  keep_first(items, r.limit);
  Gsm8kEvalOptions go;
  go.protocol = r.protocol;
  go.shots = r.shots < 0 ? gsm8k_paper_shots() : int(r.shots);
  if (go.shots > gsm8k_max_shots())
    fail("--shots", std::to_string(go.shots), "more shots than the ", gsm8k_max_shots(), " STD:GSM8k exemplars");
  go.batch = r.batch;
  go.max_new_tokens = int(r.max_new_tokens);
  go.share_prefix = !r.no_prefix_cache;
  LoadedModel m = load_model(r.model.string(), r.experts.string(), r.device, r.tokenizer.string());
  go.routing = routing_of(m);
  go.progress = progress;
  Json summary = eval_header("gsm8k", r.model.string(), r.experts.string(), r.command_line);
  summary["data"] = described;
  summary["shots"] = go.shots;
  std::vector<Json> examples;
  if (r.generate) {
    Gsm8kGenerateResult g = evaluate_gsm8k_generate(*m.model, *m.tokenizer, items, go);
    summary["protocol"] = "generate";
    summary["max_new_tokens"] = go.max_new_tokens;
    summary.update(summary_json(g));
    for (const auto& e : g.examples) examples.push_back(to_json(e));
    if (g.stats.truncated)
      log_warn(g.stats.truncated, " prompts were cut on the left to fit ", go.max_new_tokens,
               " new tokens into the model's context");
  } else {
    Gsm8kBpbResult b = evaluate_gsm8k_bpb(*m.model, *m.tokenizer, items, go, r.token_logprobs);
    summary["protocol"] = go.protocol;
    summary.update(summary_json(b));
    for (const auto& e : b.examples) examples.push_back(to_json(e));
    if (b.stats.truncated) log_warn(b.stats.truncated, " contexts were cut on the left to fit the model's context");
  }
  if (!r.out.empty()) write_eval_dir(r.out.string(), r.overwrite, examples, summary);
  return summary;
}

Json run_mc(const McRequest& r, const std::function<void(size_t, size_t)>& progress) {
  std::vector<McItem> items = read_mc_jsonl(r.data);
  keep_first(items, r.limit);
  std::vector<McItem> fewshot;
  if (!r.fewshot.empty()) fewshot = read_mc_jsonl(r.fewshot);
  McOptions mo;
  mo.prompt.template_name = r.template_name;
  mo.prompt.description = r.description;
  mo.prompt.shots = r.shots >= 0 ? int(r.shots) : (r.fewshot.empty() ? 0 : 5);
  mo.uncond = r.uncond;
  mo.batch = r.batch;
  mo.share_prefix = !r.no_prefix_cache;
  if (r.primary == "acc_uncond" && !r.uncond) fail("--primary-metric", r.primary, "needs --uncond");
  // Build every prompt before loading the model: too few shots fails fast.
  for (const auto& it : items) mc_context(it, fewshot, mo.prompt, r.fewshot);
  LoadedModel m = load_model(r.model.string(), r.experts.string(), r.device, r.tokenizer.string());
  mo.routing = routing_of(m);
  mo.progress = progress;
  McResult result = evaluate_mc(*m.model, *m.tokenizer, items, fewshot, mo, r.fewshot);
  Json summary = eval_header("mc", r.model.string(), r.experts.string(), r.command_line);
  summary["data"] = r.data;
  summary["fewshot"] = r.fewshot.empty() ? Json(nullptr) : Json(r.fewshot);
  summary["shots"] = mo.prompt.shots;
  summary["template"] = r.template_name;
  summary["description"] = r.description;
  summary.update(summary_json(result, r.primary));
  if (!r.out.empty()) {
    std::vector<Json> examples;
    for (const auto& e : result.examples) examples.push_back(to_json(e));
    write_eval_dir(r.out.string(), r.overwrite, examples, summary);
  }
  return summary;
}

namespace {

using K = FieldSpec::Kind;

// The rows every single-task evaluation ends with, in --help's order.
template <class R>
void append_model_rows(std::vector<Field<R>>& fields, const std::string& out_help) {
  for (auto f : {
           member_field(tokenizer_field(), &R::tokenizer),
           member_field(field("out", K::String, out_help).caller_owned(), &R::out),
           member_field(field("force", K::Bool, "Replace --out if it exists").caller_owned(), &R::overwrite),
           member_field(experts_field(), &R::experts),
           member_field(device_field(), &R::device),
       })
    fields.push_back(f);
}

RequestSpec<Gsm8kRequest> make_gsm8k_spec() {
  using R = Gsm8kRequest;
  RequestSpec<R> s;
  s.command = "eval gsm8k";
  s.summary = "GSM8K as the EMO paper runs it: bits per byte of the solution, or --generate";
  s.footer =
      "Writes --out/examples.jsonl (one record per item) and --out/summary.json when --out is given; prints\n"
      "the summary. Examples:\n"
      "  emo eval gsm8k --model out/tiny --limit 50\n"
      "  emo eval gsm8k --model out/tiny --experts math.json --data gsm8k_test.jsonl --generate --out runs/gsm8k";
  s.fields = {
      member_field(field("model", K::String, "Checkpoint directory").must().reads(), &R::model),
      member_field(field("data", K::String, "A GSM8K JSONL file ({question, answer}), e.g. the real test set").reads(),
                   &R::data),
      member_field(
          field("split", K::String,
                "Without --data: the shipped train items whose corpus id is in this corpus split (valid: 743 items)")
              .one_of({"train", "valid"}),
          &R::split),
      member_field(field("protocol", K::String,
                         "emo: bits per byte of the normalised solution (gsm8k_generation_8shot_merged); "
                         "emo-perplexity: EMO's gsm8k_perplexity_* request")
                       .one_of({"emo", "emo-perplexity"}),
                   &R::protocol),
      member_field(field("shots", K::Int, "STD:GSM8k chain-of-thought exemplars, 0-8 (default 8)"), &R::shots),
      member_field(field("generate", K::Bool, "Greedy generation and exact-match accuracy instead of bits per byte"),
                   &R::generate),
      member_field(field("max-new-tokens", K::Int, "With --generate: at most this many new tokens (oe-eval: 512)"),
                   &R::max_new_tokens),
      member_field(field("batch", K::Int, "Items per forward pass"), &R::batch),
      member_field(field("limit", K::Int, "Only the first N items").count(), &R::limit),
      member_field(field("no-prefix-cache", K::Bool, "Run every prompt from its first token (for comparison)"),
                   &R::no_prefix_cache),
      member_field(field("token-logprobs", K::Bool, "Per-example log-probability of every target token"),
                   &R::token_logprobs),
  };
  append_model_rows(s.fields, "Write examples.jsonl and summary.json into this new directory");
  return s;
}

RequestSpec<McRequest> make_mc_spec() {
  using R = McRequest;
  RequestSpec<R> s;
  s.command = "eval mc";
  s.summary = "Multiple choice in OLMES' RC format: log-likelihood of each choice";
  s.footer =
      "Writes --out/examples.jsonl (one record per question) and --out/summary.json when --out is given;\n"
      "prints the accuracies. Example:\n"
      "  emo eval mc --model out/tiny --data arc_easy.jsonl --fewshot arc_easy_train.jsonl --shots 5";
  s.fields = {
      member_field(field("model", K::String, "Checkpoint directory").must().reads(), &R::model),
      member_field(field("data", K::String, "JSONL of {question, choices: [...], answer: index}").must().reads(), &R::data),
      member_field(field("fewshot", K::String, "JSONL of few-shot examples (same format; first N in file order)").reads(),
                   &R::fewshot),
      member_field(field("shots", K::Int, "Few-shot examples per prompt (default: 5 with --fewshot, else 0)"), &R::shots),
      member_field(field("template", K::String,
                         "rc: 'Question: q\\nAnswer:'; plain: the question text verbatim (HellaSwag)")
                       .one_of({"rc", "plain"}),
                   &R::template_name),
      member_field(field("description", K::String,
                         "Text before the prompt; {subject} becomes the row's subject (MMLU: 'The following are "
                         "multiple choice questions (with answers) about {subject}.\\n\\n')"),
                   &R::description),
      member_field(
          field("uncond", K::Bool, "Also acc_uncond: subtract each choice's log-likelihood after 'Answer:' alone"),
          &R::uncond),
      member_field(field("primary-metric", K::String, "acc_per_char (OLMES RC), acc_raw, acc_per_token or acc_uncond")
                       .one_of({"acc_raw", "acc_per_token", "acc_per_char", "acc_uncond"}),
                   &R::primary),
      member_field(field("batch", K::Int, "Requests (choices) per forward pass"), &R::batch),
      member_field(field("limit", K::Int, "Only the first N questions").count(), &R::limit),
      member_field(field("no-prefix-cache", K::Bool, "Run every request from its first token (for comparison)"),
                   &R::no_prefix_cache),
  };
  append_model_rows(s.fields, "Write examples.jsonl and summary.json into this new directory");
  return s;
}

}  // namespace

const RequestSpec<Gsm8kRequest>& gsm8k_request_spec() { return built_once<Gsm8kRequest, make_gsm8k_spec>(); }

const RequestSpec<McRequest>& mc_request_spec() { return built_once<McRequest, make_mc_spec>(); }

}  // namespace emo
