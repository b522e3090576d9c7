#include "eval/generate_until.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <numeric>

#include "core/model/cpu_allocator.h"
#include "core/util/error.h"
#include "eval/loglikelihood.h"
#include "eval/prefix_cache.h"

namespace emo {

std::vector<int64_t> default_stop_ids(const Model& model, const Tokenizer& tok) {
  std::vector<int64_t> ids = model.config().eos_token_ids;
  if (ids.empty())
    if (auto e = tok.eos_id()) ids.push_back(*e);
  return ids;
}

std::string cut_at_stop_sequences(const std::string& text, const std::vector<std::string>& stops) {
  size_t cut = text.size();
  for (const auto& s : stops) {
    if (s.empty()) continue;
    size_t at = text.find(s);
    if (at != std::string::npos) cut = std::min(cut, at);
  }
  return text.substr(0, cut);
}

std::vector<GenerateUntilResult> generate_until(Model& model, const Tokenizer& tok,
                                                const std::vector<std::string>& contexts, const GenerateUntilOptions& o,
                                                GenerateUntilStats* stats_out) {
  torch::InferenceMode guard;
  CachingCpuAllocatorScope keep_blocks;  // every step's logits are the same large blocks
  auto start = std::chrono::steady_clock::now();
  const int64_t L = model.config().max_position_embeddings;
  if (o.max_new_tokens < 1) fail("generation", "max_new_tokens", "must be at least 1, got ", o.max_new_tokens);
  const int64_t max_ctx = L - o.max_new_tokens;
  if (max_ctx <= 0)
    fail("generation", "max_new_tokens", o.max_new_tokens,
         " new tokens leave no room for a prompt in the model's context (", L, ")");
  GenerateUntilStats stats;
  std::vector<GenerateUntilResult> out(contexts.size());
  std::vector<std::vector<int64_t>> prompts(contexts.size());
  const int32_t prefix = prefix_token_id(model, tok);
  for (size_t i = 0; i < contexts.size(); ++i) {
    std::vector<int32_t> ids = tok.encode(contexts[i]);
    if (ids.empty()) ids = {prefix};
    if (int64_t(ids.size()) > max_ctx) {
      if (!o.truncate_context)
        fail("prompt", std::to_string(i), "prompt of ", ids.size(), " tokens + ", o.max_new_tokens,
             " new tokens exceeds the model's context (", L, ")");
      ids.erase(ids.begin(), ids.end() - max_ctx);
      out[i].truncated = true;
      stats.truncated++;
    }
    prompts[i].assign(ids.begin(), ids.end());
    out[i].prompt_tokens = int64_t(ids.size());
    stats.prompt_tokens += ids.size();
  }
  const torch::Tensor& head_w = model.weights().lm_head.defined() ? model.weights().lm_head : model.weights().embed;
  const int64_t pad = model.config().pad_token_id.value_or(0);
  size_t max_stop = 0;
  for (const auto& s : o.stop_sequences) max_stop = std::max(max_stop, s.size());
  const size_t batch = size_t(std::max<int64_t>(1, o.batch));
  size_t done_rows = 0;
  // The text of one token ("" for special tokens and for ids the tokenizer does not know).
  std::map<int64_t, std::string> pieces;
  auto token_text = [&](int64_t id) -> const std::string& {
    auto it = pieces.find(id);
    if (it != pieces.end()) return it->second;
    std::string text;
    if (id >= 0 && id < tok.vocab_size()) {
      try {
        text = tok.decode({int32_t(id)}, true);
      } catch (const Error&) {
      }
    }
    return pieces.emplace(id, std::move(text)).first->second;
  };
  // One pass per class of prompts that may share a prefix (below).
  auto run_class = [&](const std::vector<size_t>& order) {
    if (order.empty()) return;
    std::vector<const std::vector<int64_t>*> all;
    size_t shortest = SIZE_MAX;
    for (size_t i : order) all.push_back(&prompts[i]), shortest = std::min(shortest, prompts[i].size());
    // Every row keeps at least one token after the prefix: its logits start the generation.
    const size_t P = o.share_prefix ? std::min(common_prefix_length(all), shortest - 1) : 0;
    stats.shared_prefix = std::max<uint64_t>(stats.shared_prefix, P);
    PrefixCache root(model, o.routing);
    if (P > 0) {
      root.extend_one(std::vector<int64_t>(prompts[order[0]].begin(), prompts[order[0]].begin() + long(P)));
      stats.prompt_tokens_forwarded += P;
    }
    for (size_t first = 0; first < order.size(); first += batch) {
      const size_t B = std::min(batch, order.size() - first);
      std::vector<std::vector<int64_t>> rows(B);
      for (size_t b = 0; b < B; ++b) {
        const auto& p = prompts[order[first + b]];
        rows[b].assign(p.begin() + long(P), p.end());
        stats.prompt_tokens_forwarded += rows[b].size();
      }
      PrefixCache cache = root.expand(int64_t(B));
      torch::Tensor hidden = cache.extend(rows, pad);  // [B, T, H]
      std::vector<int64_t> last(B);
      for (size_t b = 0; b < B; ++b) last[b] = int64_t(b) * hidden.size(1) + int64_t(rows[b].size()) - 1;
      auto idx = torch::tensor(last, torch::kInt64).to(hidden.device());
      auto logits = torch::linear(hidden.reshape({-1, hidden.size(2)}).index_select(0, idx), head_w);  // [B, V]
      std::vector<bool> active(B, true);
      std::vector<std::string> text(B);
      for (int step = 0; step < o.max_new_tokens; ++step) {
        auto next = logits.argmax(-1).to(torch::kCPU).contiguous();
        const int64_t* nx = next.data_ptr<int64_t>();
        std::vector<int64_t> feed(B, pad);
        size_t still = 0;
        for (size_t b = 0; b < B; ++b) {
          if (!active[b]) continue;
          GenerateUntilResult& r = out[order[first + b]];
          int64_t token = nx[b];
          r.tokens.push_back(token);
          stats.new_tokens++;
          feed[b] = token;
          if (std::find(o.stop_ids.begin(), o.stop_ids.end(), token) != o.stop_ids.end()) {
            active[b] = false;
            r.finish_reason = "eos";
          } else if (max_stop > 0) {
            size_t from = text[b].size() >= max_stop ? text[b].size() - max_stop + 1 : 0;
            text[b] += token_text(token);
            for (const auto& s : o.stop_sequences)
              if (!s.empty() && text[b].find(s, from) != std::string::npos) {
                active[b] = false;
                r.finish_reason = "stop";
                break;
              }
          }
          if (active[b]) ++still;
        }
        if (still == 0 || step + 1 == o.max_new_tokens) break;
        logits = cache.step(feed, active).select(1, 0);
      }
      for (size_t b = 0; b < B; ++b) {
        GenerateUntilResult& r = out[order[first + b]];
        if (r.finish_reason.empty()) r.finish_reason = "length";
        std::vector<int32_t> ids(r.tokens.begin(), r.tokens.end());
        if (r.finish_reason == "eos") ids.pop_back();
        // Ids past the tokenizer's vocabulary (a model's padded embedding rows) have no text.
        ids.erase(std::remove_if(ids.begin(), ids.end(), [&](int32_t id) { return token_text(id).empty(); }),
                  ids.end());
        r.text = tok.decode(ids, true);
        r.continuation = cut_at_stop_sequences(r.text, o.stop_sequences);
      }
      done_rows += B;
      if (o.progress) o.progress(done_rows, prompts.size());
    }
  };
  // Longest prompt first: batches of similar lengths.
  std::vector<size_t> sorted(prompts.size());
  std::iota(sorted.begin(), sorted.end(), 0);
  std::stable_sort(sorted.begin(), sorted.end(),
                   [&](size_t a, size_t b) { return prompts[a].size() > prompts[b].size(); });
  // Classes by (truncated, first token): each has its own shared prefix.
  std::map<std::pair<bool, int64_t>, std::vector<size_t>> classes;
  for (size_t i : sorted) classes[{out[i].truncated, prompts[i][0]}].push_back(i);
  for (const auto& [key, members] : classes) run_class(members);
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (stats_out) *stats_out = stats;
  return out;
}

}  // namespace emo
