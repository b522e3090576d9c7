// GSM8K evaluation: the items (the corpus splits of the shipped train file, or a file the
// user passes, such as the real test set), and the two protocols.
//
//  - "emo" (the paper's gsm8k_generation_8shot_merged on train/validation, allenai/EMO
//    src/offline_evals/tasks/splits_gsm8k.py + src/scripts/eval/tasks.py): context =
//    gsm8k_context(question, 8), continuation = gsm8k_target(item) (the normalised chain of
//    thought, " ... So the answer is N."), metric = bits per byte of the continuation given
//    the context under teacher forcing, summed over items before dividing
//    (src/offline_evals/metrics/custom_perplexity.py).
//  - "emo-perplexity" (EMO's gsm8k_perplexity_* tasks, GSM8K_Perplexity_Base): the same
//    metric on gsm8k_perplexity_pair (undeduplicated exemplars, two leading spaces).
//  - generation (--generate; oe-eval GSM8K on test): greedy, stop at "Question:", "</s>",
//    "<|im_end|>", "\n\n" or EOS, at most 512 new tokens; scored by emo's reading
//    (gsm8k_extract_answer vs the normalised gold) and by the paper's exact match
//    (gsm8k_score), each with a 95% interval.
//
// Text comes from core/text/gsm8k.h only; docs/gsm8k-protocol.md has the strings.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/io/json.h"
#include "core/model/model.h"
#include "core/text/gsm8k.h"
#include "core/text/tokenizer.h"
#include "eval/generate_until.h"
#include "eval/loglikelihood.h"

namespace emo {


struct Gsm8kEvalOptions {
  std::string protocol = "emo";  // "emo" or "emo-perplexity" (bits per byte)
  int shots = 8;                 // STD:GSM8k exemplars, 0..8
  int64_t batch = 16;
  const RoutingControl* routing = nullptr;
  bool share_prefix = true;
  int max_new_tokens = 512;  // generation
  std::function<void(size_t done, size_t total)> progress;
};

// The (context, continuation) the protocol scores for one item.
std::pair<std::string, std::string> gsm8k_request(const GsmItem& item, const Gsm8kEvalOptions& options);

struct Gsm8kScored {
  std::string id;
  size_t line = 0;
  std::string prompt_sha256;  // sha256 of the context string
  std::string target;         // the continuation
  double sum_logprob = 0;     // nats
  int64_t target_tokens = 0;
  size_t target_bytes = 0;  // UTF-8 bytes of the continuation (its leading space included)
  double bits_per_byte = 0;
  bool truncated = false;
  std::vector<float> token_logprobs;  // when requested
};

struct Gsm8kBpbResult {
  std::vector<Gsm8kScored> examples;
  double sum_logprob = 0;
  uint64_t bytes = 0, tokens = 0;
  LoglikelihoodStats stats;
  double bits_per_byte() const;  // -sum / (bytes ln 2) over all items
};

Gsm8kBpbResult evaluate_gsm8k_bpb(Model& model, const Tokenizer& tokenizer, const std::vector<GsmSplitItem>& items,
                                  const Gsm8kEvalOptions& options, bool keep_token_logprobs = false);

struct Gsm8kGenerated {
  std::string id;
  size_t line = 0;
  std::string prompt_sha256;
  std::string output;                    // the generation cut at the first stop sequence
  std::optional<std::string> extracted;  // gsm8k_extract_answer(output)
  std::string gold;                      // gsm8k_normalize_number(short answer)
  bool correct = false;                  // extracted == gold
  bool exact_match = false;              // the paper's gsm8k_score
  std::string finish_reason;
  int64_t new_tokens = 0;
  bool truncated = false;
  std::vector<int64_t> tokens;
};

// Grades one generation (the raw generated text, stop sequences not yet cut) against the
// gold answer: fills output, extracted, gold, correct and exact_match.
void gsm8k_grade(Gsm8kGenerated& e, const std::string& generated, const std::string& gold_answer);

struct Gsm8kGenerateResult {
  std::vector<Gsm8kGenerated> examples;
  size_t correct = 0, exact_match = 0;
  GenerateUntilStats stats;
};

Gsm8kGenerateResult evaluate_gsm8k_generate(Model& model, const Tokenizer& tokenizer,
                                            const std::vector<GsmSplitItem>& items, const Gsm8kEvalOptions& options);

// Per-example records and summaries (docs/eval.md lists the fields).
Json to_json(const Gsm8kScored& e);
Json to_json(const Gsm8kGenerated& e);
Json summary_json(const Gsm8kBpbResult& r);
Json summary_json(const Gsm8kGenerateResult& r);

}  // namespace emo
