#include "eval/loglikelihood.h"

#include <algorithm>
#include <chrono>
#include <map>

#include "core/io/json.h"
#include "core/model/cpu_allocator.h"
#include "core/util/error.h"
#include "eval/prefix_cache.h"

namespace emo {

int32_t prefix_token_id(const Model& model, const Tokenizer& tokenizer) {
  if (!model.config().eos_token_ids.empty()) return int32_t(model.config().eos_token_ids.front());
  if (auto id = tokenizer.eos_id()) return *id;
  return 0;
}

std::pair<std::vector<int32_t>, std::vector<int32_t>> encode_pair(const Tokenizer& tok, const std::string& context,
                                                                  const std::string& continuation,
                                                                  int32_t prefix_token) {
  if (context.empty()) return {{prefix_token}, tok.encode(continuation)};
  // Python's str.rstrip() with no argument strips Unicode whitespace; contexts here end in
  // ASCII (":" or a newline at most), so the ASCII set is what matters.
  size_t keep = context.size();
  while (keep > 0 && std::string(" \t\n\r\x0b\x0c").find(context[keep - 1]) != std::string::npos) --keep;
  std::string ctx = context.substr(0, keep);
  std::string cont = context.substr(keep) + continuation;
  std::vector<int32_t> whole = tok.encode(ctx + cont);
  std::vector<int32_t> ctx_ids = tok.encode(ctx);
  std::vector<int32_t> cont_ids(whole.begin() + long(std::min(ctx_ids.size(), whole.size())), whole.end());
  if (ctx_ids.empty()) ctx_ids = {prefix_token};  // a context of whitespace only
  return {ctx_ids, cont_ids};
}

namespace {

struct Prepared {
  std::vector<int64_t> head;     // input before the last context token
  std::vector<int64_t> tail;     // last context token + continuation[:-1]
  std::vector<int64_t> targets;  // the continuation
  bool truncated = false;
};

}  // namespace

std::vector<LoglikelihoodResult> score_loglikelihood_tokens(
    Model& model, const std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>>& pairs,
    const LoglikelihoodOptions& o, LoglikelihoodStats* stats_out) {
  torch::InferenceMode guard;
  auto start = std::chrono::steady_clock::now();
  const int64_t L = o.max_length > 0 ? std::min(o.max_length, model.config().max_position_embeddings)
                                     : model.config().max_position_embeddings;
  LoglikelihoodStats stats;
  std::vector<LoglikelihoodResult> results(pairs.size());
  std::vector<Prepared> prep(pairs.size());
  for (size_t i = 0; i < pairs.size(); ++i) {
    const auto& [ctx, cont] = pairs[i];
    if (ctx.empty()) fail("request", std::to_string(i), "empty context (use the prefix token)");
    if (cont.empty()) fail("request", std::to_string(i), "empty continuation");
    if (int64_t(cont.size()) > L)
      fail("request", std::to_string(i), "continuation of ", cont.size(),
           " tokens is longer than the model's context (", L, ")");
    std::vector<int64_t> full(ctx.begin(), ctx.end());
    full.insert(full.end(), cont.begin(), cont.end());
    Prepared& p = prep[i];
    if (int64_t(full.size()) > L + 1) {
      full.erase(full.begin(), full.end() - (L + 1));
      p.truncated = true;
      stats.truncated++;
    }
    size_t split = full.size() - 1 - cont.size();
    p.head.assign(full.begin(), full.begin() + long(split));
    p.tail.assign(full.begin() + long(split), full.end() - 1);
    p.targets.assign(full.end() - long(cont.size()), full.end());
    stats.tokens_requested += full.size() - 1;
    stats.tokens_scored += cont.size();
    results[i].tokens = int64_t(cont.size());
    results[i].truncated = p.truncated;
  }

  // Requests with the same head form a group (the choices of one question); groups keep
  // the order of their first request, then go longest head first (little padding).
  std::vector<std::vector<size_t>> groups;
  {
    std::map<std::vector<int64_t>, size_t> index;
    for (size_t i = 0; i < prep.size(); ++i) {
      if (o.share_prefix) {
        auto [it, fresh] = index.emplace(prep[i].head, groups.size());
        if (fresh) groups.emplace_back();
        groups[it->second].push_back(i);
      } else {
        groups.push_back({i});
      }
    }
    std::stable_sort(groups.begin(), groups.end(),
                     [&](const auto& a, const auto& b) { return prep[a[0]].head.size() > prep[b[0]].head.size(); });
  }
  // Requests are run in classes, each with its own shared prefix: by first token (an odd
  // request such as the unconditioned "Answer:" does not spoil the others' prefix), and
  // truncated contexts apart from whole ones (a truncated one starts somewhere else).
  std::map<std::pair<bool, int64_t>, std::vector<std::vector<size_t>>> classes;
  for (auto& g : groups) {
    const Prepared& p = prep[g[0]];
    classes[{p.truncated, p.head.empty() ? int64_t(-1) : p.head[0]}].push_back(std::move(g));
  }
  const int64_t pad = model.config().pad_token_id.value_or(0);
  const torch::Tensor& head_w = model.weights().lm_head.defined() ? model.weights().lm_head : model.weights().embed;
  const size_t batch_rows = size_t(std::max<int64_t>(1, o.batch));
  size_t done = 0;
  auto run_class = [&](const std::vector<std::vector<size_t>>& groups) {
    std::vector<const std::vector<int64_t>*> heads;
    for (const auto& g : groups) heads.push_back(&prep[g[0]].head);
    const size_t P = o.share_prefix ? common_prefix_length(heads) : 0;
    stats.shared_prefix = std::max<uint64_t>(stats.shared_prefix, P);

    PrefixCache root(model, o.routing);
    if (P > 0) {
      root.extend_one(std::vector<int64_t>(heads[0]->begin(), heads[0]->begin() + long(P)));
      stats.tokens_forwarded += P;
    }
    for (size_t first = 0; first < groups.size();) {
      // Whole groups, up to batch_rows requests (at least one group), and no longer than the
      // model's context once padded (each request alone fits: P + head + tail <= L).
      size_t last = first, rows = 0, max1 = 0, max2 = 0;
      while (last < groups.size()) {
        size_t t1 = heads[last]->size() - P, t2 = 0;
        for (size_t i : groups[last]) t2 = std::max(t2, prep[i].tail.size());
        bool fits = rows + groups[last].size() <= batch_rows &&
                    int64_t(P + std::max(max1, t1) + std::max(max2, t2)) <= model.config().max_position_embeddings;
        if (last > first && !fits) break;
        rows += groups[last].size(), max1 = std::max(max1, t1), max2 = std::max(max2, t2);
        ++last;
      }
      const size_t G = last - first;
      // Level 1: each group's head after the shared prefix, one row per group.
      std::vector<std::vector<int64_t>> level1(G);
      for (size_t g = 0; g < G; ++g) {
        const auto& h = *heads[first + g];
        level1[g].assign(h.begin() + long(P), h.end());
        stats.tokens_forwarded += level1[g].size();
      }
      PrefixCache branch = root.expand(int64_t(G));
      branch.extend(level1, pad);
      // Level 2: each request's tail, branching from its group's row.
      std::vector<int64_t> row_group;
      std::vector<size_t> row_request;
      std::vector<std::vector<int64_t>> level2;
      for (size_t g = 0; g < G; ++g)
        for (size_t i : groups[first + g]) {
          row_group.push_back(int64_t(g));
          row_request.push_back(i);
          level2.push_back(prep[i].tail);
          stats.tokens_forwarded += prep[i].tail.size();
        }
      PrefixCache leaves = branch.select(row_group);
      torch::Tensor hidden = leaves.extend(level2, pad);  // [R, T2, H]
      const int64_t R = hidden.size(0), T2 = hidden.size(1), H = hidden.size(2);
      std::vector<int64_t> flat;
      for (int64_t r = 0; r < R; ++r)
        for (size_t j = 0; j < level2[size_t(r)].size(); ++j) flat.push_back(r * T2 + int64_t(j));
      auto hflat = hidden.reshape({R * T2, H});
      std::vector<float> lp(flat.size());
      std::vector<uint8_t> is_max(flat.size());
      std::vector<int64_t> targets;
      for (int64_t r = 0; r < R; ++r) {
        const auto& t = prep[row_request[size_t(r)]].targets;
        targets.insert(targets.end(), t.begin(), t.end());
      }
      // The LM head only where a target is scored, in chunks (the vocabulary is large).
      const size_t chunk = 1024;
      for (size_t c = 0; c < flat.size(); c += chunk) {
        size_t n = std::min(chunk, flat.size() - c);
        auto idx =
            torch::tensor(std::vector<int64_t>(flat.begin() + long(c), flat.begin() + long(c + n)), torch::kInt64)
                .to(hidden.device());
        auto logits = torch::linear(hflat.index_select(0, idx), head_w).to(torch::kFloat32);
        auto logp = torch::log_softmax(logits, -1);
        auto tgt =
            torch::tensor(std::vector<int64_t>(targets.begin() + long(c), targets.begin() + long(c + n)), torch::kInt64)
                .to(hidden.device());
        auto picked = logp.gather(1, tgt.unsqueeze(1)).squeeze(1).to(torch::kCPU).contiguous();
        auto greedy = (logits.argmax(-1) == tgt).to(torch::kCPU).to(torch::kUInt8).contiguous();
        std::copy(picked.data_ptr<float>(), picked.data_ptr<float>() + n, lp.begin() + long(c));
        std::copy(greedy.data_ptr<uint8_t>(), greedy.data_ptr<uint8_t>() + n, is_max.begin() + long(c));
      }
      size_t k = 0;
      for (int64_t r = 0; r < R; ++r) {
        LoglikelihoodResult& res = results[row_request[size_t(r)]];
        double sum = 0;
        bool greedy = true;
        for (size_t j = 0; j < level2[size_t(r)].size(); ++j, ++k) {
          sum += double(lp[k]);
          greedy = greedy && is_max[k];
          if (o.keep_token_logprobs) res.token_logprobs.push_back(lp[k]);
        }
        res.sum_logprob = sum;
        res.greedy = greedy;
      }
      done += rows;
      if (o.progress) o.progress(done, pairs.size());
      first = last;
    }
  };
  for (const auto& [key, members] : classes) run_class(members);
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (stats_out) *stats_out = stats;
  return results;
}

std::vector<LoglikelihoodResult> score_loglikelihood(Model& model, const Tokenizer& tok,
                                                     const std::vector<LoglikelihoodRequest>& requests,
                                                     const LoglikelihoodOptions& o, LoglikelihoodStats* stats) {
  CachingCpuAllocatorScope keep_blocks;  // every batch's logits are the same large blocks
  auto start = std::chrono::steady_clock::now();
  const int32_t prefix = prefix_token_id(model, tok);
  std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>> pairs;
  pairs.reserve(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    pairs.push_back(encode_pair(tok, requests[i].context, requests[i].continuation, prefix));
    if (pairs.back().second.empty())
      fail("request", std::to_string(i), "the continuation ", Json(requests[i].continuation).dump(), " has no tokens");
  }
  auto out = score_loglikelihood_tokens(model, pairs, o, stats);
  if (stats) stats->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return out;
}

}  // namespace emo
