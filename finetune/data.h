// Training data: what a step trains on, and in which order.
//
// Supervised finetuning (SFT), one JSONL record per example:
//   gsm8k              {question, answer}: the shared GSM8K prompt builder
//                      (gsm8k_sft_pair: "Question: ...\nAnswer:" + " <normalised answer>"),
//                      the string EMO's finetuning and the evaluation both use
//   prompt-completion  {prompt, completion}
//   instruction        {instruction, input?, output}: instruction ["\n\nInput: " input]
//                      "\n\nResponse:" + " " output (no chat template)
//   --prompt-template / --completion-template ("{field}" placeholders) for anything else.
// prompt + completion is tokenized as one text, EOS is appended, and the loss goes on the
// completion tokens and the EOS only (labels -100 on the prompt, as EMO's data_utils
// masks everything up to the last "Answer:"). Examples longer than max_length are cut to
// max_length - 1 tokens before the EOS (counted), as EMO's tokenizer call does.
//
// Causal LM on a corpus ({text} JSONL, optionally gzip, filtered by domain): documents are
// tokenized once (cached, keyed by the tokenizer's and the file's hashes and the filter),
// EOS after each, concatenated and cut into fixed-length sequences. Each token keeps its
// document id, so attention never crosses a document and positions restart at each
// document's first token (Batch::document_ids).
//
// Order: a seeded permutation per epoch (splitmix64; the same on every machine); global
// step s takes the next `batch` sequences of that order. The data position is a pure
// function of (seed, step), which is what a checkpoint records.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/io/json.h"
#include "core/text/tokenizer.h"
#include "finetune/losses.h"

namespace emo {

// One training sequence. labels are unshifted (HF convention): label[t] is token t when
// it is trained on, kIgnoreIndex otherwise; the loss predicts label[t + 1] from position t.
struct Sequence {
  std::vector<int32_t> ids, labels;
  std::vector<int32_t> docs;  // document id per token; empty = one document
};

class TrainData {
 public:
  virtual ~TrainData() = default;
  virtual size_t size() const = 0;
  virtual Sequence get(size_t i) const = 0;
  virtual int64_t length(size_t i) const = 0;
  virtual int64_t target_tokens(size_t i) const = 0;  // labels[1:] != ignore: CE terms
  virtual int64_t label_tokens(size_t i) const = 0;   // labels != ignore: EMO's LB mask
  std::string kind;  // "sft" or "corpus"
  Json stats = Json::object();  // what loading counted (records, skipped, truncated, ...)
};

// ---- SFT -----------------------------------------------------------------------------

struct SftOptions {
  std::string format = "auto";  // auto, gsm8k, prompt-completion, instruction
  int shots = 8;                 // gsm8k: in-context examples before the question
  std::string prompt_template, completion_template;
  int64_t max_length = 4096;
  bool skip_bad = false;
  size_t limit = 0;
  // Only these lines of the file (1-based, as JsonlReader counts them); empty = every line.
  // `emo finetune --split` fills it with a corpus split's GSM8K items.
  std::vector<size_t> only_lines;
};

// "gsm8k", "prompt-completion", "instruction" or "text", from the first readable record.
std::string detect_format(const std::string& path);

std::unique_ptr<TrainData> load_sft(const std::string& path, const Tokenizer& tokenizer, int32_t eos,
                                    const SftOptions& options);

// "{field}" placeholders from a JSON record ("{{" and "}}" for braces).
std::string fill_template(const std::string& tmpl, const Json& record, const std::string& file, size_t line);

// ---- corpus --------------------------------------------------------------------------

struct CorpusOptions {
  std::string text_field = "text";
  std::string domain;
  int64_t seq_len = 1024;
  size_t limit = 0;
  bool skip_bad = false;
  std::string cache_dir;  // "" = tokenize without caching
};

std::unique_ptr<TrainData> load_corpus(const std::string& path, const Tokenizer& tokenizer, int32_t eos,
                                       const CorpusOptions& options);

// The token cache location: $EMO_CACHE, else $XDG_CACHE_HOME/emo, else ~/.cache/emo.
std::string default_cache_dir();

// CorpusOptions::cache_dir from the --cache-dir / --no-cache flags: "" with no_cache, the
// given directory, else default_cache_dir().
std::string token_cache_dir(const std::string& given, bool no_cache);

// ---- several sources -----------------------------------------------------------------

// Several datasets as one (`emo finetune --data A --data B`): their examples one after the
// other, so an epoch visits each example of each source once and BatchOrder's shuffle mixes
// them; a source's share of a batch is its share of the examples. A weight w makes a source
// count w times its size per epoch: 2 visits each example twice, 0.5 its first half (file
// order; the shuffle still mixes them). SFT examples and packed text sequences may share a
// batch (collate pads). `kind` is the sources' kind when they agree, else "mixed"; `stats`
// lists each source's under "sources", with its weight and examples per epoch.
std::unique_ptr<TrainData> concat_data(std::vector<std::unique_ptr<TrainData>> sources,
                                       const std::vector<double>& weights = {});
// emo::Error naming --data-weight unless `weights` is empty or holds one positive, finite
// weight per source: concat_data's check, which a caller may also run before loading.
void check_data_weights(const std::vector<double>& weights, size_t sources);

// ---- order ---------------------------------------------------------------------------

class BatchOrder {
 public:
  BatchOrder(size_t dataset_size, int64_t global_batch, bool drop_last, bool shuffle, uint64_t seed);
  int64_t steps_per_epoch() const { return steps_per_epoch_; }
  // Dataset indices of global step `step` (0-based), in order.
  std::vector<size_t> indices(int64_t step) const;
  int64_t epoch_of(int64_t step) const { return step / steps_per_epoch_; }
  // The permutation of one epoch.
  std::vector<size_t> permutation(int64_t epoch) const;

 private:
  size_t n_;
  int64_t batch_, steps_per_epoch_;
  bool drop_last_, shuffle_;
  uint64_t seed_;
  mutable int64_t cached_epoch_ = -1;
  mutable std::vector<size_t> cached_;
};

// This rank's share of a global batch: contiguous, sizes differing by at most one.
std::vector<size_t> rank_share(const std::vector<size_t>& global, int rank, int world);

// ---- batches -------------------------------------------------------------------------

struct MicroBatch {
  torch::Tensor input_ids;     // [b, T] int64 (right-padded)
  torch::Tensor document_ids;  // [b, T] int64 or undefined
  torch::Tensor ce_rows;       // [M] int64: rows of the flattened [b*T] hidden states with a target
  torch::Tensor ce_targets;    // [M] int64
  torch::Tensor lb_mask;       // [b*T] bool: tokens the router losses average over
  int64_t tokens = 0;          // real (unpadded) tokens
  int64_t rows = 0;
};
// `lb_on_labels`: EMO's mask (labels != ignore) when true, else the attention mask
// (every real token; transformers' Mixtral loss for OLMoE).
MicroBatch collate(const std::vector<Sequence>& seqs, int64_t pad_id, bool lb_on_labels, torch::Device device);

}  // namespace emo
