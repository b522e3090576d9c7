// emo eval suite and emo eval sweep as one call each. A suite scores the full model and
// each module (an experts file or a checkpoint) on every task, one column each; a sweep
// chooses a module per budget and scores each masked. Both read and check their tasks
// before any model loads, and own OUT (atomic). Their flags and recipe steps' settings are
// the specs' rows.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/io/json.h"
#include "core/util/fields.h"
#include "core/util/fs.h"
#include "eval/report.h"
#include "eval/suite.h"
#include "eval/sweep.h"
#include "surgery/examples.h"

namespace emo {

// Where the tasks' data comes from, as the flags name it.
struct EvalTaskData {
  std::string corpus;  // perplexity: JSONL(.gz) of {text, domain}; "": data_root's valid split
  size_t ppl_limit = 20;  // documents per domain (0: all)
  int64_t window = 256, pool = 0;
  std::string gsm8k_data, gsm8k_split = "valid";  // "" data: the shipped items of the split
  size_t gsm8k_limit = 0;
  int64_t shots = -1;  // GSM8K exemplars (< 0: the paper's 8)
  int64_t max_new_tokens = 512;
  std::vector<std::string> mc, mc_fewshot;  // one few-shot file per mc file, or none
  int64_t mc_shots = -1;                    // < 0: 5 with few-shot files, else 0
  std::string mc_template = "rc";
  size_t mc_limit = 0;
};

struct EvalSuiteRequest {
  fs::path model;
  std::vector<std::string> modules, names;  // more columns; their names (full model first)
  EvalTaskData data;
  bool no_ppl = false, no_gsm8k = false, generate = false;
  int64_t batch = 16;
  fs::path tokenizer, experts;
  std::string device = "auto";
  std::string format = "text";  // what the command prints: text, markdown or json
  fs::path out;                 // "": print only
  bool overwrite = false;
  fs::path data_root;
  std::vector<std::string> command_line;
};

struct EvalReport {
  Json json;    // suite.json / sweep.json
  Table table;  // what is printed
};

// on_column(name) before each column.
EvalReport run_eval_suite(const EvalSuiteRequest& request, const std::function<void(const std::string&)>& on_column = {});
const RequestSpec<EvalSuiteRequest>& eval_suite_request_spec();

struct EvalSweepRequest {
  fs::path model;
  ExampleRequest examples;  // choose each module from these
  SweepRequest sweep;       // method, budgets, random baseline, seed
  std::vector<std::string> tasks = {"ppl", "gsm8k"};  // ppl, gsm8k, gsm8k-generate, mc (--mc adds it)
  EvalTaskData data;
  fs::path tokenizer;
  std::string device = "auto";
  fs::path out;
  bool overwrite = false;
  fs::path data_root;
  std::vector<std::string> command_line;
};

// progress(stage, done, total) while routing the examples ("route", tokens); on_point(done,
// total, what) before each point and on_step(what) while selecting.
struct SweepProgress {
  std::function<void(const std::string&, uint64_t, uint64_t)> route;
  std::function<void(size_t, size_t, const std::string&)> point;
  std::function<void(const std::string&)> selecting;
};
EvalReport run_eval_sweep(const EvalSweepRequest& request, const SweepProgress& progress = {});
const RequestSpec<EvalSweepRequest>& eval_sweep_request_spec();

}  // namespace emo
