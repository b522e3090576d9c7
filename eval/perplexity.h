// Per-domain loss, perplexity and bits per byte of a text corpus (teacher forcing).
// Each document is tokenized and cut into windows of `window` tokens; inside a window
// every token after the first is scored given the ones before it. Evaluation routes per
// token, as the reference HF code does, unless PplOptions::pool asks for document pools.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/model/model.h"
#include "core/text/dataset.h"
#include "core/text/tokenizer.h"

namespace emo {

struct PplStats {
  double nll = 0;        // nats, summed
  uint64_t tokens = 0;   // scored tokens
  uint64_t bytes = 0;    // UTF-8 bytes of the scored tokens
  uint64_t docs = 0;
  double loss() const { return tokens ? nll / double(tokens) : 0; }
  double perplexity() const;
  double bits_per_byte() const;
};

struct PplOptions {
  int64_t window = 256;
  int64_t batch = 8;  // windows per forward pass
  const RoutingControl* routing = nullptr;
  // > 0: each window routes inside a pool of this many routed experts per layer, its
  // top experts by the router probability summed over the window's tokens, as
  // allenai/EMO's router does at evaluation (eval_document_expert_pool). The pool is chosen
  // from the whole window, so a token's experts depend on the tokens after it: not a
  // causal score. 0: every token routed on its own.
  int64_t pool = 0;
  std::function<void(uint64_t tokens_done, uint64_t tokens_total)> progress;
};

struct PplResult {
  std::map<std::string, PplStats> by_domain;  // and "all"
  double seconds = 0;
  double tokens_per_second() const;
};

// The windows evaluate_perplexity scores, in the order it scores them (longest first): each
// document's tokens cut into pieces of `window` (the last may be shorter; a piece of one
// token is dropped). `doc` indexes `docs`.
struct PplWindow {
  std::vector<int64_t> ids;
  size_t doc;
};
std::vector<PplWindow> perplexity_windows(const Tokenizer& tokenizer, const std::vector<TextDoc>& docs, int64_t window);

PplResult evaluate_perplexity(Model& model, const Tokenizer& tokenizer, const std::vector<TextDoc>& docs,
                              const PplOptions& options);

// UTF-8 byte length of each token id (byte-level BPE: a token is a fixed byte string).
// A corpus split's documents, at most `per_domain` of each domain in file order (0: all);
// emo::Error naming the file when none are left.
std::vector<TextDoc> corpus_docs(const std::string& corpus, size_t per_domain);

std::vector<int32_t> token_byte_lengths(const Tokenizer& tokenizer);

}  // namespace emo
