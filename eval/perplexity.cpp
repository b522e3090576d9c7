#include "eval/perplexity.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <memory>

#include "core/model/cpu_allocator.h"
#include "core/model/pool_router.h"
#include "core/util/error.h"

namespace emo {

double PplStats::perplexity() const { return std::exp(loss()); }
double PplStats::bits_per_byte() const { return bytes ? nll / (double(bytes) * std::log(2.0)) : 0; }
double PplResult::tokens_per_second() const {
  auto it = by_domain.find("all");
  return it == by_domain.end() || seconds <= 0 ? 0 : double(it->second.tokens) / seconds;
}

std::vector<TextDoc> corpus_docs(const std::string& corpus, size_t per_domain) {
  TextDocs docs = load_text_docs(corpus);
  std::vector<TextDoc> kept;
  std::map<std::string, size_t> seen;
  for (auto& d : docs.docs)
    if (!per_domain || seen[d.domain]++ < per_domain) kept.push_back(std::move(d));
  if (kept.empty()) fail(corpus, "", "no documents");
  return kept;
}

std::vector<int32_t> token_byte_lengths(const Tokenizer& tok) {
  std::vector<int32_t> out(size_t(tok.vocab_size()), 0);
  for (int32_t id = 0; id < tok.vocab_size(); ++id) {
    try {
      out[size_t(id)] = int32_t(tok.decode({id}).size());
    } catch (const Error&) {
      out[size_t(id)] = 0;  // a hole in the id space: never produced by encode
    }
  }
  return out;
}

std::vector<PplWindow> perplexity_windows(const Tokenizer& tok, const std::vector<TextDoc>& docs, int64_t window) {
  std::vector<PplWindow> windows;
  for (size_t d = 0; d < docs.size(); ++d) {
    std::vector<int32_t> ids = tok.encode(docs[d].text);
    for (size_t begin = 0; begin + 1 < ids.size(); begin += size_t(window)) {
      size_t end = std::min(ids.size(), begin + size_t(window));
      if (end - begin < 2) break;
      windows.push_back({std::vector<int64_t>(ids.begin() + long(begin), ids.begin() + long(end)), d});
    }
  }
  // Longest first: batches of similar lengths waste little on padding.
  std::stable_sort(windows.begin(), windows.end(),
                   [](const PplWindow& a, const PplWindow& b) { return a.ids.size() > b.ids.size(); });
  return windows;
}

PplResult evaluate_perplexity(Model& model, const Tokenizer& tok, const std::vector<TextDoc>& docs, const PplOptions& o) {
  torch::InferenceMode guard;
  CachingCpuAllocatorScope keep_blocks;  // every batch's logits are the same large blocks
  auto start = std::chrono::steady_clock::now();
  if (o.window < 2) fail("--window", std::to_string(o.window), "a window needs at least 2 tokens");
  if (o.window > model.config().max_position_embeddings)
    fail("--window", std::to_string(o.window), "longer than the model's context (", model.config().max_position_embeddings, ")");
  const std::vector<PplWindow> windows = perplexity_windows(tok, docs, o.window);
  uint64_t total = 0;
  for (const auto& w : windows) total += w.ids.size() - 1;
  const std::vector<int32_t> bytes_of = token_byte_lengths(tok);
  const int64_t pad = model.config().pad_token_id.value_or(0);
  PplResult result;
  for (const auto& d : docs) {
    result.by_domain[d.domain.empty() ? "(none)" : d.domain].docs++;
    result.by_domain["all"].docs++;
  }
  ForwardOptions fo;
  fo.routing = o.routing;
  std::unique_ptr<DocumentPoolRouter> pools;
  RoutingControl pooled;
  if (o.pool > 0) {
    pools = std::make_unique<DocumentPoolRouter>(model.config(), PoolRange{o.pool, o.pool}, /*seed=*/0, "--pool");
    if (o.routing) pooled.allowed = o.routing->allowed;
    pooled.pool = pools->control().pool;
    fo.routing = &pooled;
  }
  uint64_t done = 0;
  for (size_t first = 0; first < windows.size(); first += size_t(o.batch)) {
    size_t last = std::min(windows.size(), first + size_t(o.batch));
    int64_t B = int64_t(last - first), T = int64_t(windows[first].ids.size());
    // Right padding is harmless under a causal mask: real tokens never see it.
    auto ids = torch::full({B, T}, pad, torch::kInt64);
    for (int64_t b = 0; b < B; ++b) {
      const auto& w = windows[first + size_t(b)].ids;
      ids[b].narrow(0, 0, int64_t(w.size())).copy_(torch::tensor(w, torch::kInt64));
    }
    Batch batch{ids};
    // With pools, a row's padding is a document of its own: it must not help choose the
    // window's pool (real tokens never see it either way).
    if (o.pool > 0 && int64_t(windows[last - 1].ids.size()) < T) {
      batch.document_ids = torch::zeros({B, T}, torch::kInt64);
      for (int64_t b = 0; b < B; ++b) {
        const int64_t n = int64_t(windows[first + size_t(b)].ids.size());
        batch.document_ids[b].narrow(0, n, T - n).fill_(1);
      }
    }
    auto logits = model.forward(batch, fo).to(torch::kFloat32);
    auto logp = torch::log_softmax(logits.narrow(1, 0, T - 1), -1);
    auto nll = -logp.gather(-1, ids.narrow(1, 1, T - 1).to(logp.device()).unsqueeze(-1)).squeeze(-1).to(torch::kCPU);
    auto acc = nll.accessor<float, 2>();
    for (int64_t b = 0; b < B; ++b) {
      const PplWindow& w = windows[first + size_t(b)];
      const TextDoc& doc = docs[w.doc];
      PplStats& dom = result.by_domain[doc.domain.empty() ? "(none)" : doc.domain];
      PplStats& all = result.by_domain["all"];
      for (size_t t = 1; t < w.ids.size(); ++t) {
        double v = acc[b][int64_t(t) - 1];
        uint64_t nb = uint64_t(bytes_of[size_t(w.ids[t])]);
        dom.nll += v, all.nll += v;
        dom.tokens++, all.tokens++;
        dom.bytes += nb, all.bytes += nb;
      }
      done += w.ids.size() - 1;
    }
    if (o.progress) o.progress(done, total);
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace emo
