#include "finetune/data.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "core/io/jsonl.h"
#include "core/io/safetensors.h"
#include "core/io/sha256.h"
#include "core/text/gsm8k.h"
#include "core/util/error.h"
#include "core/util/fs.h"
#include "core/util/splitmix.h"
#include "core/util/log.h"

namespace emo {

namespace {

int64_t count_not_ignored(const std::vector<int32_t>& labels, size_t from) {
  int64_t n = 0;
  for (size_t i = from; i < labels.size(); ++i) n += labels[i] != kIgnoreIndex;
  return n;
}

std::string string_member(const Json& r, const std::string& key, const std::string& file, size_t line, bool required) {
  auto it = r.find(key);
  if (it == r.end() || it->is_null()) {
    if (required) fail(file, cat("line ", line), "no field '", key, "'");
    return "";
  }
  if (it->is_string()) return it->get<std::string>();
  if (it->is_number()) return it->dump();
  fail(file, cat("line ", line), "field '", key, "' is ", json_type_name(*it), ", expected a string");
}

bool has(const Json& r, const char* key) { return r.is_object() && r.contains(key); }

// ---- SFT -----------------------------------------------------------------------------

class SftData : public TrainData {
 public:
  std::vector<Sequence> seqs;
  size_t size() const override { return seqs.size(); }
  Sequence get(size_t i) const override { return seqs[i]; }
  int64_t length(size_t i) const override { return int64_t(seqs[i].ids.size()); }
  int64_t target_tokens(size_t i) const override { return targets_[i]; }
  int64_t label_tokens(size_t i) const override { return labels_[i]; }
  void index() {
    targets_.clear(), labels_.clear();
    for (const auto& s : seqs) targets_.push_back(count_not_ignored(s.labels, 1)), labels_.push_back(count_not_ignored(s.labels, 0));
  }

 private:
  std::vector<int64_t> targets_, labels_;
};

std::pair<std::string, std::string> sft_strings(const std::string& format, const Json& r, const SftOptions& o,
                                                const std::string& file, size_t line) {
  if (!r.is_object()) fail(file, cat("line ", line), "expected a JSON object");
  std::string prompt, completion;
  if (!o.prompt_template.empty()) prompt = fill_template(o.prompt_template, r, file, line);
  if (!o.completion_template.empty()) completion = fill_template(o.completion_template, r, file, line);
  if (!o.prompt_template.empty() && !o.completion_template.empty()) return {prompt, completion};
  std::pair<std::string, std::string> base;
  if (format == "gsm8k") {
    GsmItem item{string_member(r, "question", file, line, true), string_member(r, "answer", file, line, true)};
    try {
      base = gsm8k_sft_pair(item, o.shots);
    } catch (const Error& e) {
      fail(file, cat("line ", line), e.detail());
    }
  } else if (format == "prompt-completion") {
    base = {string_member(r, "prompt", file, line, true), string_member(r, "completion", file, line, true)};
  } else if (format == "instruction") {
    std::string instruction = string_member(r, "instruction", file, line, true);
    std::string input = string_member(r, "input", file, line, false);
    std::string output = string_member(r, "output", file, line, true);
    base = {instruction + (input.empty() ? "" : "\n\nInput: " + input) + "\n\nResponse:", " " + output};
  } else {
    fail("--format", format, "expected gsm8k, prompt-completion or instruction for finetuning on examples");
  }
  if (!o.prompt_template.empty()) base.first = prompt;
  if (!o.completion_template.empty()) base.second = completion;
  return base;
}

}  // namespace

std::string fill_template(const std::string& tmpl, const Json& record, const std::string& file, size_t line) {
  std::string out;
  for (size_t i = 0; i < tmpl.size(); ++i) {
    char c = tmpl[i];
    if ((c == '{' || c == '}') && i + 1 < tmpl.size() && tmpl[i + 1] == c) {
      out.push_back(c);
      ++i;
      continue;
    }
    if (c != '{') {
      out.push_back(c);
      continue;
    }
    size_t close = tmpl.find('}', i);
    if (close == std::string::npos) fail("template", tmpl, "unclosed '{'");
    std::string key = tmpl.substr(i + 1, close - i - 1);
    out += string_member(record, key, file, line, true);
    i = close;
  }
  return out;
}

std::string detect_format(const std::string& path) {
  JsonlReader reader(path);
  Json r;
  size_t skipped = 0;
  while (reader.next_skipping_bad(r, skipped)) {
    if (has(r, "question") && has(r, "answer")) return "gsm8k";
    if (has(r, "prompt") && has(r, "completion")) return "prompt-completion";
    if (has(r, "instruction") && has(r, "output")) return "instruction";
    if (has(r, "text")) return "text";
    fail(path, cat("line ", reader.line()),
         "cannot tell the format from the keys (expected question/answer, prompt/completion, instruction/output or "
         "text); pass --format");
  }
  fail(path, "", "empty dataset: no JSON records");
}

std::unique_ptr<TrainData> load_sft(const std::string& path, const Tokenizer& tok, int32_t eos, const SftOptions& o) {
  std::string format = o.format == "auto" ? detect_format(path) : o.format;
  if (o.max_length < 2) fail("--max-length", std::to_string(o.max_length), "must be at least 2");
  auto data = std::make_unique<SftData>();
  data->kind = "sft";
  JsonlReader reader(path);
  Json r;
  size_t skipped = 0, records = 0, truncated = 0, no_completion = 0, prefix_mismatch = 0, outside = 0;
  int64_t tokens = 0, targets = 0;
  std::vector<size_t> only = o.only_lines;
  std::sort(only.begin(), only.end());
  while (o.skip_bad ? reader.next_skipping_bad(r, skipped) : reader.next(r)) {
    ++records;
    if (!only.empty() && !std::binary_search(only.begin(), only.end(), reader.line())) {
      ++outside;
      continue;
    }
    std::pair<std::string, std::string> pc;
    try {
      pc = sft_strings(format, r, o, path, reader.line());
    } catch (const Error&) {
      if (!o.skip_bad) throw;
      ++skipped;
      continue;
    }
    std::vector<int32_t> prompt_ids = tok.encode(pc.first);
    std::vector<int32_t> ids = tok.encode(pc.first + pc.second);
    // The loss starts where the prompt's own tokens end (they are a prefix of the full
    // text's tokens unless a merge crosses the boundary; then at the common prefix).
    size_t n_prompt = 0;
    while (n_prompt < prompt_ids.size() && n_prompt < ids.size() && prompt_ids[n_prompt] == ids[n_prompt]) ++n_prompt;
    if (n_prompt != prompt_ids.size()) ++prefix_mismatch;
    if (int64_t(ids.size()) > o.max_length - 1) {
      ids.resize(size_t(o.max_length - 1));
      ++truncated;
    }
    if (n_prompt >= ids.size()) {  // the cut left no completion token
      ++no_completion;
      continue;
    }
    ids.push_back(eos);
    Sequence s;
    s.labels = ids;
    for (size_t i = 0; i < n_prompt; ++i) s.labels[i] = int32_t(kIgnoreIndex);
    s.ids = std::move(ids);
    tokens += int64_t(s.ids.size());
    targets += count_not_ignored(s.labels, 1);
    data->seqs.push_back(std::move(s));
    if (o.limit && data->seqs.size() >= o.limit) break;
  }
  if (data->seqs.empty())
    fail(path, "", "empty dataset: no training examples", records ? cat(" (", records, " records, ", skipped,
                                                                           " skipped, ", no_completion,
                                                                           " with no completion left)")
                                                                     : "");
  data->index();
  data->stats = {{"format", format},          {"records", records},   {"examples", data->seqs.size()},
                 {"skipped_bad", skipped},    {"truncated", truncated}, {"dropped_no_completion", no_completion},
                 {"prompt_boundary_merged", prefix_mismatch}, {"tokens", tokens}, {"target_tokens", targets},
                 {"max_length", o.max_length}};
  if (format == "gsm8k") data->stats["shots"] = o.shots;
  if (!only.empty()) data->stats["outside_split"] = outside;
  if (truncated) log_warn(path, ": ", truncated, " examples longer than ", o.max_length, " tokens were truncated");
  if (skipped) log_warn(path, ": skipped ", skipped, " malformed lines");
  return data;
}

// ---- corpus --------------------------------------------------------------------------

namespace {

class PackedData : public TrainData {
 public:
  std::vector<int32_t> tokens;      // every document + EOS, concatenated
  std::vector<int64_t> doc_starts;  // first token of each document (and the end)
  int64_t seq_len = 0;
  size_t size() const override { return tokens.size() / size_t(seq_len); }
  int64_t length(size_t) const override { return seq_len; }
  int64_t target_tokens(size_t) const override { return seq_len - 1; }
  int64_t label_tokens(size_t) const override { return seq_len; }
  Sequence get(size_t i) const override {
    Sequence s;
    size_t begin = i * size_t(seq_len), end = begin + size_t(seq_len);
    s.ids.assign(tokens.begin() + int64_t(begin), tokens.begin() + int64_t(end));
    s.labels = s.ids;
    s.docs.resize(size_t(seq_len));
    // Global document indices: the same document keeps its id in every sequence it spans,
    // which is what pretraining's per-document pool draws are keyed by.
    auto it = std::upper_bound(doc_starts.begin(), doc_starts.end(), int64_t(begin)) - 1;
    for (size_t t = begin; t < end; ++t) {
      while (it + 1 != doc_starts.end() && *(it + 1) <= int64_t(t)) ++it;
      s.docs[t - begin] = int32_t(it - doc_starts.begin());
    }
    return s;
  }
};

std::string cache_key(const std::string& path, const Tokenizer& tok, int32_t eos, const CorpusOptions& o) {
  Json key = {{"version", "emo-token-cache-v1"}, {"tokenizer", hash_file(tok.path())}, {"data", hash_file(path)},
              {"text_field", o.text_field}, {"domain", o.domain}, {"limit", o.limit}, {"skip_bad", o.skip_bad},
              {"eos", eos}};
  return sha256_hex(canonical_json(key));
}

bool read_cache(const fs::path& file, PackedData& d) {
  std::error_code ec;
  if (!fs::exists(file, ec)) return false;
  try {
    auto st = SafetensorsFile::open(file.string());
    auto t = st->view("tokens"), s = st->view("doc_starts");
    if (t.dtype != DType::I32 || s.dtype != DType::I64) return false;
    d.tokens.assign(reinterpret_cast<const int32_t*>(t.data), reinterpret_cast<const int32_t*>(t.data) + t.nbytes / 4);
    d.doc_starts.assign(reinterpret_cast<const int64_t*>(s.data), reinterpret_cast<const int64_t*>(s.data) + s.nbytes / 8);
    auto it = st->metadata().find("stats");
    if (it != st->metadata().end()) d.stats = parse_json(it->second, file.string());
    return true;
  } catch (const Error& e) {
    log_warn("token cache ", file.string(), " unreadable (", e.what(), "); tokenizing again");
    return false;
  }
}

void write_cache(const fs::path& file, const PackedData& d) {
  std::error_code ec;
  fs::create_directories(file.parent_path(), ec);
  if (ec) {
    log_warn("cannot create the token cache directory ", file.parent_path().string(), ": ", ec.message());
    return;
  }
  remove_stale_temporaries(file);  // a killed writer's FILE.tmp-<pid>
  fs::path tmp = file.string() + ".tmp-" + std::to_string(::getpid());
  std::vector<TensorSpec> specs{{"tokens", DType::I32, {int64_t(d.tokens.size())}},
                                {"doc_starts", DType::I64, {int64_t(d.doc_starts.size())}}};
  try {
    SafetensorsWriter w(tmp, specs, {{"format", "emo-token-cache"}, {"stats", d.stats.dump()}});
    w.write("tokens", d.tokens.data(), d.tokens.size() * 4);
    w.write("doc_starts", d.doc_starts.data(), d.doc_starts.size() * 8);
    w.finish();
    fs::rename(tmp, file);
  } catch (const std::exception& e) {
    fs::remove(tmp, ec);
    log_warn("token cache not written (", e.what(), ")");
  }
}

}  // namespace

std::string default_cache_dir() {
  if (const char* e = std::getenv("EMO_CACHE")) return e;
  if (const char* x = std::getenv("XDG_CACHE_HOME")) return (fs::path(x) / "emo").string();
  if (const char* h = std::getenv("HOME")) return (fs::path(h) / ".cache" / "emo").string();
  return "";
}

std::string token_cache_dir(const std::string& given, bool no_cache) {
  if (no_cache) return "";
  return given.empty() ? default_cache_dir() : given;
}

std::unique_ptr<TrainData> load_corpus(const std::string& path, const Tokenizer& tok, int32_t eos,
                                       const CorpusOptions& o) {
  if (o.seq_len < 2) fail("--seq-len", std::to_string(o.seq_len), "must be at least 2");
  auto d = std::make_unique<PackedData>();
  d->kind = "corpus";
  d->seq_len = o.seq_len;
  fs::path cache_file;
  bool cached = false;
  if (!o.cache_dir.empty()) {
    cache_file = fs::path(o.cache_dir) / "tokens" / (cache_key(path, tok, eos, o) + ".safetensors");
    cached = read_cache(cache_file, *d);
  }
  if (!cached) {
    JsonlReader reader(path);
    Json r;
    size_t skipped = 0, docs = 0, empty = 0, other_domain = 0;
    while (o.skip_bad ? reader.next_skipping_bad(r, skipped) : reader.next(r)) {
      auto it = r.find(o.text_field);
      if (it == r.end() || !it->is_string()) {
        if (o.skip_bad) {
          ++skipped;
          continue;
        }
        fail(path, cat("line ", reader.line()), "no string field '", o.text_field, "'");
      }
      if (!o.domain.empty()) {
        auto dm = r.find("domain");
        if (dm == r.end() || !dm->is_string() || dm->get<std::string>() != o.domain) {
          ++other_domain;
          continue;
        }
      }
      size_t before = d->tokens.size();
      tok.encode_append(it->get<std::string>(), d->tokens);
      if (d->tokens.size() == before) {
        ++empty;
        continue;
      }
      d->doc_starts.push_back(int64_t(before));
      d->tokens.push_back(eos);
      ++docs;
      if (o.limit && docs >= o.limit) break;
    }
    d->doc_starts.push_back(int64_t(d->tokens.size()));
    d->stats = {{"documents", docs}, {"skipped_bad", skipped}, {"empty_documents", empty},
                {"other_domains", other_domain}, {"tokens", d->tokens.size()}};
    if (!cache_file.empty() && docs > 0) write_cache(cache_file, *d);
  }
  const int64_t T = o.seq_len, n = int64_t(d->tokens.size());
  const int64_t seqs = n / T;
  size_t split = 0, longer = 0;
  for (size_t i = 0; i + 1 < d->doc_starts.size(); ++i) {
    int64_t b = d->doc_starts[i], e = d->doc_starts[i + 1];
    if (e - b > T) ++longer;
    if (b / T != (e - 1) / T) ++split;
  }
  d->stats["format"] = "text";
  d->stats["seq_len"] = T;
  d->stats["sequences"] = seqs;
  d->stats["dropped_tail_tokens"] = n - seqs * T;
  d->stats["documents_across_sequences"] = split;
  d->stats["documents_longer_than_seq_len"] = longer;
  d->stats["cache"] = cache_file.empty() ? "off" : (cached ? "hit" : "written");
  if (seqs == 0)
    fail(path, "", "empty dataset: ", n, " tokens", o.domain.empty() ? "" : " of domain " + o.domain,
         " make no sequence of ", T, " tokens");
  if (longer) log_info(path, ": ", longer, " documents are longer than ", T, " tokens and continue across sequences");
  return d;
}

// ---- order ---------------------------------------------------------------------------

namespace {

// Uniform in [0, bound) without modulo bias (rejection).
uint64_t bounded(uint64_t& state, uint64_t bound) {
  uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
  for (;;) {
    uint64_t r = splitmix64_next(state);
    if (r < limit) return r % bound;
  }
}

}  // namespace

BatchOrder::BatchOrder(size_t n, int64_t batch, bool drop_last, bool shuffle, uint64_t seed)
    : n_(n), batch_(batch), drop_last_(drop_last), shuffle_(shuffle), seed_(seed) {
  if (batch <= 0) fail("--batch-size", std::to_string(batch), "must be positive");
  steps_per_epoch_ = drop_last ? int64_t(n) / batch : (int64_t(n) + batch - 1) / batch;
  if (steps_per_epoch_ == 0)
    fail("--batch-size", std::to_string(batch), "is larger than the dataset (", n, " sequences) with --drop-last");
}

std::vector<size_t> BatchOrder::permutation(int64_t epoch) const {
  std::vector<size_t> p(n_);
  for (size_t i = 0; i < n_; ++i) p[i] = i;
  if (!shuffle_) return p;
  uint64_t state = seed_ * 0x9e3779b97f4a7c15ULL ^ (uint64_t(epoch) + 1) * 0xd1b54a32d192ed03ULL;
  for (size_t i = n_; i > 1; --i) std::swap(p[i - 1], p[bounded(state, i)]);
  return p;
}

std::vector<size_t> BatchOrder::indices(int64_t step) const {
  int64_t epoch = step / steps_per_epoch_, within = step % steps_per_epoch_;
  if (epoch != cached_epoch_) cached_ = permutation(epoch), cached_epoch_ = epoch;
  size_t begin = size_t(within * batch_), end = std::min(n_, begin + size_t(batch_));
  return std::vector<size_t>(cached_.begin() + int64_t(begin), cached_.begin() + int64_t(end));
}

std::vector<size_t> rank_share(const std::vector<size_t>& global, int rank, int world) {
  size_t n = global.size(), base = n / size_t(world), extra = n % size_t(world);
  size_t begin = size_t(rank) * base + std::min(size_t(rank), extra);
  size_t count = base + (size_t(rank) < extra ? 1 : 0);
  return std::vector<size_t>(global.begin() + int64_t(begin), global.begin() + int64_t(begin + count));
}

// ---- batches -------------------------------------------------------------------------

namespace {

class ConcatData : public TrainData {
 public:
  // counts[s]: source s's examples per epoch (its size times its weight).
  ConcatData(std::vector<std::unique_ptr<TrainData>> sources, const std::vector<size_t>& counts)
      : sources_(std::move(sources)) {
    for (size_t c : counts) starts_.push_back(size_), size_ += c;
  }
  size_t size() const override { return size_; }
  Sequence get(size_t i) const override { auto [d, j] = locate(i); return d.get(j); }
  int64_t length(size_t i) const override { auto [d, j] = locate(i); return d.length(j); }
  int64_t target_tokens(size_t i) const override { auto [d, j] = locate(i); return d.target_tokens(j); }
  int64_t label_tokens(size_t i) const override { auto [d, j] = locate(i); return d.label_tokens(j); }

 private:
  // The source holding global index i (the last one starting at or before it) and i's index
  // inside it: a weight above 1 comes round to the source's start again.
  std::pair<const TrainData&, size_t> locate(size_t i) const {
    const size_t s = size_t(std::upper_bound(starts_.begin(), starts_.end(), i) - starts_.begin()) - 1;
    return {*sources_[s], (i - starts_[s]) % sources_[s]->size()};
  }
  std::vector<std::unique_ptr<TrainData>> sources_;
  std::vector<size_t> starts_;
  size_t size_ = 0;
};

}  // namespace

void check_data_weights(const std::vector<double>& weights, size_t sources) {
  if (!weights.empty() && weights.size() != sources)
    fail("--data-weight", "", "give one weight per --data (", sources, "); got ", weights.size());
  for (double w : weights)
    if (!(w > 0) || !std::isfinite(w)) fail("--data-weight", cat(w), "must be a positive number");
}

std::unique_ptr<TrainData> concat_data(std::vector<std::unique_ptr<TrainData>> sources,
                                       const std::vector<double>& weights) {
  check_data_weights(weights, sources.size());
  if (sources.size() == 1 && weights.empty()) return std::move(sources[0]);
  std::string kind = sources.empty() ? "" : sources[0]->kind;
  Json stats = Json::array();
  std::vector<size_t> counts;
  for (size_t i = 0; i < sources.size(); ++i) {
    const double w = weights.empty() ? 1.0 : weights[i];
    counts.push_back(size_t(std::llround(w * double(sources[i]->size()))));
    if (sources[i]->kind != kind) kind = "mixed";
    Json st = sources[i]->stats;
    st["weight"] = w;
    st["examples_per_epoch"] = counts.back();
    stats.push_back(st);
  }
  auto d = std::make_unique<ConcatData>(std::move(sources), counts);
  d->kind = kind;
  d->stats = {{"sources", stats}};
  return d;
}

MicroBatch collate(const std::vector<Sequence>& seqs, int64_t pad_id, bool lb_on_labels, torch::Device device) {
  MicroBatch mb;
  const int64_t b = int64_t(seqs.size());
  int64_t T = 0;
  bool docs = false;
  for (const auto& s : seqs) T = std::max<int64_t>(T, int64_t(s.ids.size())), docs = docs || !s.docs.empty();
  auto ids = torch::full({b, T}, pad_id, torch::kInt64);
  auto doc = docs ? torch::full({b, T}, -1, torch::kInt64) : torch::Tensor();
  auto mask = torch::zeros({b * T}, torch::kBool);
  std::vector<int64_t> rows, targets;
  auto* ip = ids.data_ptr<int64_t>();
  auto* mp = mask.data_ptr<bool>();
  for (int64_t r = 0; r < b; ++r) {
    const Sequence& s = seqs[size_t(r)];
    const int64_t n = int64_t(s.ids.size());
    for (int64_t t = 0; t < n; ++t) {
      ip[r * T + t] = s.ids[size_t(t)];
      mp[r * T + t] = lb_on_labels ? s.labels[size_t(t)] != kIgnoreIndex : true;
      if (t + 1 < n && s.labels[size_t(t + 1)] != kIgnoreIndex) rows.push_back(r * T + t), targets.push_back(s.labels[size_t(t + 1)]);
    }
    if (docs) {
      auto* dp = doc.data_ptr<int64_t>();
      for (int64_t t = 0; t < n; ++t) dp[r * T + t] = s.docs.empty() ? 0 : s.docs[size_t(t)];
    }
    mb.tokens += n;
  }
  mb.input_ids = ids.to(device);
  if (docs) mb.document_ids = doc.to(device);
  mb.ce_rows = torch::tensor(rows, torch::kInt64).to(device);
  mb.ce_targets = torch::tensor(targets, torch::kInt64).to(device);
  mb.lb_mask = mask.to(device);
  mb.rows = int64_t(rows.size());
  return mb;
}

}  // namespace emo
