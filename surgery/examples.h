// The task examples routing statistics are computed on: texts from a JSONL (a text
// field), GSM8K items ({question, answer}) through the one GSM8K prompt builder (the
// n-shot context followed by the normalised target, as EMO's selection scripts use), or
// corpus documents of a domain. One example is enough.
#pragma once

#include <string>
#include <vector>

#include "core/text/tokenizer.h"

namespace emo {

struct ExampleSource {
  std::string path;
  std::string text_field = "text";
  std::string domain;          // corpus documents of this domain only
  std::string format = "auto"; // "auto", "text", "gsm8k"
  int shots = 0;               // GSM8K: exemplars before each question (the paper uses 8)
  size_t limit = 0;            // first N examples (0 = all)
  size_t skip = 0;             // skip the first N matching examples
};

// The examples of a request with how they are routed: batch and truncation.
struct ExampleRequest {
  ExampleSource source;
  int64_t batch = 8;       // examples per forward pass
  int64_t max_length = 0;  // truncate to this many tokens (0: the model's context)
};

struct Examples {
  std::vector<std::string> texts;
  std::string format;        // what was read: "text" or "gsm8k"
  std::string file_hash;     // sha256 of the data file's bytes
  std::string set_hash;      // sha256 over the example texts actually used
};

Examples load_examples(const ExampleSource& source);

struct TokenizedExamples {
  std::vector<std::vector<int64_t>> ids;
  size_t truncated = 0;  // examples cut to the context
  int64_t tokens = 0;
};
TokenizedExamples tokenize_examples(const Examples& examples, const Tokenizer& tokenizer, int64_t max_length);

}  // namespace emo
