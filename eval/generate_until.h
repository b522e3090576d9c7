// Batched greedy generation until a stop sequence, as oe-eval's generate_until requests
// run (allenai/oe-eval oe_eval/models/eleuther_huggingface.py, generate_until_verbose):
//   - the context is encoded without special tokens and, with truncate_context (oe-eval's
//     default), cut on the left to max_length - max_gen_toks tokens;
//   - greedy decoding with the KV cache for at most max_new_tokens tokens;
//   - a row stops at an EOS id or once its text contains a stop sequence; the returned
//     continuation is the decoded text cut at the earliest stop sequence
//     (oe_eval.utils.cut_at_stop_sequence).
// The prompt prefix that all contexts share (few-shot exemplars) runs once; each batch
// branches from its KV cache. Prompts are right-padded after the prefix (padded keys are
// masked, positions count real tokens), so a row generates what it would alone.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/model/model.h"
#include "core/text/tokenizer.h"

namespace emo {

struct GenerateUntilOptions {
  int max_new_tokens = 512;
  std::vector<std::string> stop_sequences;
  std::vector<int64_t> stop_ids;  // EOS ids (the model's, by default: see default_stop_ids)
  int64_t batch = 8;
  const RoutingControl* routing = nullptr;
  bool share_prefix = true;
  bool truncate_context = true;  // false: a context that does not fit is an error
  std::function<void(size_t done, size_t total)> progress;
};

struct GenerateUntilResult {
  std::vector<int64_t> tokens;  // generated ids (a final EOS id included)
  std::string text;             // decoded generated text (special tokens skipped)
  std::string continuation;     // text cut at the earliest stop sequence
  std::string finish_reason;    // "eos", "stop" (a stop sequence), "length"
  int64_t prompt_tokens = 0;    // after truncation
  bool truncated = false;
};

struct GenerateUntilStats {
  double seconds = 0;
  uint64_t prompt_tokens = 0;  // sum over rows (as if each prompt ran alone)
  uint64_t prompt_tokens_forwarded = 0;
  uint64_t new_tokens = 0;
  uint64_t shared_prefix = 0;
  uint64_t truncated = 0;
  double new_tokens_per_second() const { return seconds > 0 ? double(new_tokens) / seconds : 0; }
};

std::vector<GenerateUntilResult> generate_until(Model& model, const Tokenizer& tokenizer,
                                                const std::vector<std::string>& contexts,
                                                const GenerateUntilOptions& options,
                                                GenerateUntilStats* stats = nullptr);

// The model's EOS ids, else the tokenizer's.
std::vector<int64_t> default_stop_ids(const Model& model, const Tokenizer& tokenizer);

// The earliest occurrence of any stop sequence cuts the text (cut_at_stop_sequence).
std::string cut_at_stop_sequences(const std::string& text, const std::vector<std::string>& stops);

}  // namespace emo
