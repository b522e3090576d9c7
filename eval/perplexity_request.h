// emo eval ppl as one call: per-domain loss, perplexity and bits per byte of a corpus file,
// its JSON written to OUT when given. emo eval ppl's flags and a recipe ppl step's settings
// are perplexity_request_spec()'s rows.
#pragma once

#include <functional>
#include <string>

#include "core/io/json.h"
#include "core/text/dataset.h"
#include "core/util/fields.h"
#include "core/util/fs.h"
#include "eval/perplexity.h"

namespace emo {

struct PerplexityRequest {
  fs::path model;
  std::string data;   // JSONL(.gz) with a text field (and a domain field)
  TextFilter filter;  // domain, limit, text field
  int64_t window = 256, batch = 8;
  int64_t pool = 0;  // PplOptions::pool
  fs::path tokenizer, experts;
  std::string device = "auto";
  fs::path out;  // "": print only
};

struct PerplexityReport {
  Json json;  // what OUT holds
  PplResult result;
};

// progress(done, total) in tokens (total 0: not known ahead).
PerplexityReport run_perplexity(const PerplexityRequest& request,
                                const std::function<void(uint64_t, uint64_t)>& progress = {});

const RequestSpec<PerplexityRequest>& perplexity_request_spec();

// PplOptions::pool's help, for every command that scores inside pools.
extern const char* const kPoolHelp;

}  // namespace emo
