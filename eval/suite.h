// `emo eval suite`: every evaluation on one model or module (one column), and the columns
// side by side as one table. A column is the full model, the full model restricted to a
// module's experts (--experts), an extracted module, or a merged model: anything that
// gives a Model and a routing restriction.
#pragma once

#include <string>
#include <vector>

#include "core/io/json.h"
#include "core/model/model.h"
#include "core/text/dataset.h"
#include "core/text/tokenizer.h"
#include "eval/gsm8k_eval.h"
#include "eval/multiple_choice.h"
#include "eval/perplexity.h"
#include "eval/report.h"

namespace emo {

struct SuiteMcTask {
  std::string name;  // the row label (the file's stem)
  std::string path, fewshot_path;
  std::vector<McItem> items, fewshot;
  McOptions options;
  std::string primary_metric = "acc_per_char";
};

// The data and settings of every task (eval/tasks.h: each task's row says which of these it
// reads and when it runs).
struct SuiteTasks {
  std::vector<TextDoc> ppl_docs;  // empty: no perplexity
  PplOptions ppl;
  std::vector<GsmSplitItem> gsm8k_items;  // empty: no GSM8K
  Gsm8kEvalOptions gsm8k;
  bool gsm8k_generate = false;  // also greedy generation accuracy
  std::vector<SuiteMcTask> mc;
};

// {"ppl": {domain: {loss, perplexity, bits_per_byte, tokens, bytes, documents}},
//  "gsm8k": {"bits_per_byte": summary, "generate": summary}, "mc": {name: summary},
//  "seconds": ...}: each wanted task of eval_tasks() in turn. The routing restriction
// applies to every task.
Json run_suite(Model& model, const Tokenizer& tokenizer, const RoutingControl* routing, const SuiteTasks& tasks);

// Each task's rows (perplexity per domain, GSM8K bits per byte (and accuracy), each MC
// task's primary metric in percent with its 95% interval), then seconds; one column per name.
Table suite_table(const std::vector<std::string>& names, const std::vector<Json>& columns);

}  // namespace emo
