// Multiple-choice evaluation in OLMES' ranked-classification ("RC") format, as allenai/oe-eval
// scores ARC, MMLU, HellaSwag and the like:
//
//  - prompt (oe_eval/tasks/utils.py make_cloze_prompt): "Question: <question>\nAnswer:";
//    with the "plain" template the question is the prompt verbatim (HellaSwag: the
//    preprocessed "<activity>: <context>"); a row's "query" field, when present, is used
//    verbatim whatever the template;
//  - few-shot (base_task.py fewshot_context, fewshot_source / MMLU dev: the first k
//    examples in file order, not sampled): description + "\n\n".join(doc_to_text(ex) +
//    " " + gold choice) + "\n\n" + doc_to_text(doc); when the few-shot rows carry a
//    "subject", only those of the item's subject are used (MMLU's per-subject dev set);
//  - each choice is a log-likelihood request with continuation " " + choice
//    (MultipleChoiceTask.construct_requests), tokenized by lm-eval's _encode_pair;
//  - metrics (oe_eval/metrics/metric.py MCAccuracy.process_one_doc): the predicted choice
//    is the first maximum of sum_logits (acc_raw), of sum_logits / num_tokens
//    (acc_per_token), of sum_logits / len(continuation) in characters (acc_per_char), and
//    with --uncond of sum_logits - sum_logits given the context "Answer:" (acc_uncond,
//    MultipleChoiceTask.unconditioned_prompt). OLMES' RC tasks report acc_per_char
//    (mmlu.py DEFAULT_RC_METRIC; arc.py, hellaswag.py), ARC-Challenge acc_uncond.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/io/json.h"
#include "core/model/model.h"
#include "core/text/tokenizer.h"
#include "eval/loglikelihood.h"

namespace emo {

// One JSONL row: {"question": str, "choices": [str, ...], "answer": int} plus optional
// "query" (the prompt, verbatim), "id", "subject".
struct McItem {
  std::string id;
  size_t line = 0;  // 1-based line in its file
  std::string question, query, subject;
  std::vector<std::string> choices;
  int answer = 0;
};

// Reads the rows; a row without "question"/"query", with fewer than two choices, an empty
// choice, or an answer that is not an index into the choices is an emo::Error naming the
// line; so is a file with no rows.
std::vector<McItem> read_mc_jsonl(const std::string& path);

struct McPromptOptions {
  std::string template_name = "rc";  // "rc": "Question: q\nAnswer:"; "plain": q verbatim
  std::string description;           // prepended to the whole prompt; "{subject}" -> the
                                     // item's subject with "_" -> " " (MMLU's description)
  int shots = 0;                     // few-shot examples from the few-shot rows
};

// doc_to_text of one row.
std::string mc_doc_to_text(const McItem& item, const std::string& template_name);
// The full prompt of `item`. Too few few-shot rows (for its subject) is an emo::Error.
std::string mc_context(const McItem& item, const std::vector<McItem>& fewshot, const McPromptOptions& options,
                       const std::string& fewshot_file = "");

struct McOptions {
  McPromptOptions prompt;
  bool uncond = false;  // also score each choice after "Answer:" alone (acc_uncond)
  int64_t batch = 16;
  const RoutingControl* routing = nullptr;
  bool share_prefix = true;
  std::function<void(size_t done, size_t total)> progress;
};

struct McScored {
  std::string id;
  size_t line = 0;
  std::string prompt_sha256;
  int gold = 0;
  std::vector<double> sum_logprob, sum_logprob_uncond;
  std::vector<int64_t> tokens;
  std::vector<size_t> chars;  // len(" " + choice) in code points
  int pred_raw = 0, pred_per_token = 0, pred_per_char = 0, pred_uncond = -1;
};

struct McResult {
  std::vector<McScored> examples;
  size_t acc_raw = 0, acc_per_token = 0, acc_per_char = 0, acc_uncond = 0;
  bool uncond = false;
  LoglikelihoodStats stats;
};

// The metric's argmax: the first index of the largest value (Python's max over the list).
int first_argmax(const std::vector<double>& values);

// Fills the pred_* fields from sum_logprob, tokens, chars (and sum_logprob_uncond when
// not empty), as MCAccuracy.process_one_doc picks them.
void mc_predict(McScored& e);

McResult evaluate_mc(Model& model, const Tokenizer& tokenizer, const std::vector<McItem>& items,
                     const std::vector<McItem>& fewshot, const McOptions& options,
                     const std::string& fewshot_file = "");

Json to_json(const McScored& e);
// {"items", "acc_raw", "acc_per_token", "acc_per_char"(, "acc_uncond") each as
// accuracy_json, "primary_metric", "tokens_per_second", ...}
Json summary_json(const McResult& r, const std::string& primary_metric = "acc_per_char");

}  // namespace emo
