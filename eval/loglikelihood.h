// Teacher-forced log-likelihood of continuations given contexts: the request type behind
// GSM8K bits per byte and multiple-choice scoring, computed as lm-evaluation-harness /
// oe-eval compute it, and batched so that a prefix shared by many requests is run once.
//
// Tokenization (lm-eval TemplateLM._encode_pair, which oe-eval's HFLM_Verbose.loglikelihood_verbose
// calls; allenai/oe-eval oe_eval/models/eleuther_huggingface.py):
//   - trailing whitespace of the context moves to the front of the continuation;
//   - whole = encode(context + continuation), ctx = encode(context),
//     continuation tokens = whole[len(ctx):];
//   - an empty context is replaced by one token (the EOS, HF's prefix_token_id);
//   - no special tokens are added (add_special_tokens=False).
// Truncation (_loglikelihood_tokens_verbose): the model reads
// (ctx + cont)[-(max_length + 1):][:-1], i.e. the context loses tokens on the left when the
// pair does not fit; a continuation longer than max_length is an error.
//
// Batching: the longest token prefix that every request's context shares (the few-shot
// exemplars) runs once and its KV cache is reused by every batch; inside a batch the
// requests that share a context (the choices of one question) run that context once
// and branch from its cache. This changes only the order of floating-point operations.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "core/text/utf8.h"  // utf8_length: Python's len() of a continuation
#include "core/model/model.h"
#include "core/text/tokenizer.h"

namespace emo {

struct LoglikelihoodRequest {
  std::string context, continuation;
};

// _encode_pair as above. `prefix_token` stands in for an empty context.
std::pair<std::vector<int32_t>, std::vector<int32_t>> encode_pair(const Tokenizer& tokenizer,
                                                                  const std::string& context,
                                                                  const std::string& continuation,
                                                                  int32_t prefix_token);

struct LoglikelihoodResult {
  double sum_logprob = 0;             // sum of log p(token | before), nats (oe-eval "sum_logits")
  int64_t tokens = 0;                 // continuation tokens ("num_tokens")
  bool greedy = false;                // every continuation token was the argmax ("is_greedy")
  bool truncated = false;             // the context lost tokens on the left to fit the model
  std::vector<float> token_logprobs;  // per continuation token, when keep_token_logprobs
};

struct LoglikelihoodOptions {
  int64_t batch = 16;  // requests per forward pass
  const RoutingControl* routing = nullptr;
  bool share_prefix = true;  // false: every request runs alone from its first token
  bool keep_token_logprobs = false;
  int64_t max_length = 0;  // 0: the model's max_position_embeddings
  std::function<void(size_t done, size_t total)> progress;
};

struct LoglikelihoodStats {
  double seconds = 0;
  uint64_t tokens_forwarded = 0;  // tokens that went through the model
  uint64_t tokens_scored = 0;     // continuation tokens
  uint64_t tokens_requested = 0;  // sum of the requests' input lengths (without reuse)
  uint64_t shared_prefix = 0;     // length of the prefix every request shares (run once)
  uint64_t truncated = 0;         // requests whose context was cut
  // Tokens of the requests' inputs per second of wall time (what a no-reuse scorer would do).
  double tokens_per_second() const { return seconds > 0 ? double(tokens_requested) / seconds : 0; }
};

std::vector<LoglikelihoodResult> score_loglikelihood(Model& model, const Tokenizer& tokenizer,
                                                     const std::vector<LoglikelihoodRequest>& requests,
                                                     const LoglikelihoodOptions& options,
                                                     LoglikelihoodStats* stats = nullptr);

// The same on already tokenized (context, continuation) pairs (context non-empty).
std::vector<LoglikelihoodResult> score_loglikelihood_tokens(
    Model& model, const std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>>& pairs,
    const LoglikelihoodOptions& options, LoglikelihoodStats* stats = nullptr);

// The id that stands in for an empty context: the model's first EOS id, else the
// tokenizer's, else 0.
int32_t prefix_token_id(const Model& model, const Tokenizer& tokenizer);

}  // namespace emo
