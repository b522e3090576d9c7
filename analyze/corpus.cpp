// Reading the documents to analyze: text and domain per line, grouped and tokenized.
#include <algorithm>
#include <map>

#include "analyze/analyze.h"
#include "core/io/jsonl.h"
#include "core/util/error.h"

namespace emo {

namespace {

struct RawDoc {
  std::string id, domain, text;
};

std::string string_field(const Json& r, const std::string& key, const std::string& path, size_t line) {
  auto it = r.find(key);
  if (it == r.end() || !it->is_string()) fail(path, cat("line ", line, ".", key), "missing or not a string");
  return it->get<std::string>();
}

std::vector<RawDoc> read_docs(const CorpusSource& s) {
  std::vector<RawDoc> docs;
  std::map<std::string, size_t> per_domain;
  JsonlReader reader(s.path);
  Json r;
  while (reader.next(r)) {
    RawDoc d;
    d.text = string_field(r, s.text_field, s.path, reader.line());
    d.domain = string_field(r, s.domain_field, s.path, reader.line());
    auto id = r.find("id");
    d.id = id != r.end() && id->is_string() ? id->get<std::string>() : cat("line ", reader.line());
    if (s.per_domain && per_domain[d.domain] >= s.per_domain) continue;
    ++per_domain[d.domain];
    docs.push_back(std::move(d));
    if (s.limit && docs.size() >= s.limit) break;
  }
  return docs;
}

}  // namespace

AnalyzeCorpus load_corpus(const CorpusSource& s, const EncodeFn& encode, int64_t max_length) {
  if (s.group_by != "domain" && s.group_by != "document")
    fail("--group-by", s.group_by, "expected domain or document");
  if (max_length < 1) fail("--max-length", cat(max_length), "must be at least 1");
  std::vector<RawDoc> raw = read_docs(s);
  AnalyzeCorpus c;
  std::vector<std::string> domains;
  for (auto& d : raw) {
    std::vector<int32_t> ids = encode(d.text);
    if (ids.empty()) continue;
    if (int64_t(ids.size()) > max_length) {
      ids.resize(size_t(max_length));
      ++c.truncated;
    }
    c.ids.emplace_back(ids.begin(), ids.end());
    c.doc_ids.push_back(d.id);
    domains.push_back(d.domain);
    c.tokens += int64_t(ids.size());
  }
  if (c.ids.empty()) fail(s.path, "", "no non-empty documents to analyze");
  // Domains sorted by name, counting only documents that have tokens.
  std::map<std::string, int> domain_index;
  for (const auto& d : domains) domain_index[d] = 0;
  for (auto& [name, index] : domain_index) {
    index = int(c.domain_names.size());
    c.domain_names.push_back(name);
  }
  if (s.group_by == "domain") c.group_names = c.domain_names;
  for (size_t i = 0; i < domains.size(); ++i) {
    c.domain.push_back(domain_index.at(domains[i]));
    if (s.group_by == "domain") {
      c.group.push_back(c.domain.back());
    } else {
      c.group.push_back(int(i));
      c.group_names.push_back(c.doc_ids[i]);
    }
  }
  return c;
}

}  // namespace emo
