// Text datasets: the corpus ({"id", "domain", "text"}, optionally gzip), generic
// {text-field} JSONL, filtered by domain and id, limited.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "core/util/fs.h"

namespace emo {

struct TextDoc {
  std::string id, domain, text;
  size_t line = 0;  // 1-based line in the file
};

struct TextFilter {
  std::string text_field = "text";
  std::string domain;             // keep only this domain ("" = all)
  std::set<std::string> ids;      // keep only these ids (empty = all)
  std::set<std::string> exclude;  // drop these ids
  size_t limit = 0;               // at most this many (0 = all)
  bool skip_bad = false;          // skip malformed lines (counted) instead of failing
};

struct TextDocs {
  std::vector<TextDoc> docs;
  size_t skipped_bad = 0;
};

// Lines without the text field are an error naming the line (or skipped with skip_bad).
TextDocs load_text_docs(const std::string& path, const TextFilter& filter = {});

// The shipped corpus's `split` ("train" or "valid") under a data folder:
// DATA/corpus/SPLIT.jsonl.gz.
fs::path corpus_split_path(const fs::path& data_root, const std::string& split);

}  // namespace emo
