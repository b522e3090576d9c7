// Small random models for the eval tests: the micro EMO shape with the dolma2-8k
// tokenizer (so real text goes through), weights drawn large enough that routing and
// greedy choices are decisive (as tests/core/model/model_fixtures does), saved as a
// checkpoint directory with its tokenizer so `emo eval` can load the same model.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "core/model/model.h"
#include "core/text/tokenizer.h"
#include "test_util.h"

namespace emo::test {

struct EvalModel {
  fs::path dir;  // checkpoint + tokenizer.json
  std::unique_ptr<Model> model;
  std::unique_ptr<Tokenizer> tokenizer;
};

// The shared model of the eval tests (built once per process): micro EMO, vocabulary
// 8002, context 2048 (8-shot GSM8K prompts fit).
EvalModel& eval_model();

// Per-token log-probabilities of `ids[1:]` given the tokens before them: one forward pass
// over the whole sequence, no cache, no batching: the slow reference.
std::vector<double> reference_logprobs(Model& model, const std::vector<int32_t>& ids,
                                       const RoutingControl* routing = nullptr);

// Greedy decoding by recomputing the whole sequence for every new token.
std::vector<int64_t> greedy_by_recompute(Model& model, std::vector<int64_t> seq, int n,
                                         const RoutingControl* routing = nullptr);

}  // namespace emo::test
