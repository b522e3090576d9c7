// emo eval gsm8k and emo eval mc as one call each: items read and checked, the model
// loaded, every item scored, summary (and examples) written to OUT when given. Their flags
// and recipe steps' settings are the specs' rows.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/io/json.h"
#include "core/util/fields.h"
#include "core/util/fs.h"
#include "eval/gsm8k_eval.h"

namespace emo {

struct Gsm8kRequest {
  fs::path model;
  std::string data;            // a GSM8K JSONL file; "": the shipped train items of `split`
  std::string split = "valid";  // train or valid (the corpus split whose GSM8K ids are used)
  std::string protocol = "emo";
  int64_t shots = -1;  // < 0: the paper's 8
  bool generate = false;
  int64_t max_new_tokens = 512;
  int64_t batch = 16;
  size_t limit = 0;
  bool no_prefix_cache = false, token_logprobs = false;
  fs::path tokenizer, experts;
  std::string device = "auto";
  fs::path out;  // "": print only
  bool overwrite = false;
  fs::path data_root;  // where the shipped GSM8K and corpus live (the caller's data/)
  std::vector<std::string> command_line;
};

// The items of `data`, or of the shipped GSM8K train file whose corpus ids are in `split`
// ("train" or "valid") under data_root; `described` says which.
std::vector<GsmSplitItem> gsm8k_items_for(const std::string& data, const std::string& split, const fs::path& data_root,
                                          std::string& described);

// progress(done, total) in items. Returns summary.json's body.
Json run_gsm8k(const Gsm8kRequest& request, const std::function<void(size_t, size_t)>& progress = {});
const RequestSpec<Gsm8kRequest>& gsm8k_request_spec();

struct McRequest {
  fs::path model;
  std::string data, fewshot;  // JSONL of {question, choices, answer}; few-shot examples
  int64_t shots = -1;         // < 0: 5 with a few-shot file, else 0
  std::string template_name = "rc", description, primary = "acc_per_char";
  bool uncond = false;
  int64_t batch = 16;
  size_t limit = 0;
  bool no_prefix_cache = false;
  fs::path tokenizer, experts;
  std::string device = "auto";
  fs::path out;
  bool overwrite = false;
  std::vector<std::string> command_line;
};

// progress(done, total) in requests. Returns summary.json's body.
Json run_mc(const McRequest& request, const std::function<void(size_t, size_t)>& progress = {});
const RequestSpec<McRequest>& mc_request_spec();

// Only the first `limit` (0: all).
template <typename T>
void keep_first(std::vector<T>& v, size_t limit) {
  if (limit && v.size() > limit) v.resize(limit);
}

}  // namespace emo
