#include "eval/gsm8k_eval.h"

#include <cmath>
#include <cstring>
#include <map>

#include "core/io/jsonl.h"
#include "core/io/sha256.h"
#include "core/util/error.h"
#include "core/util/fs.h"
#include "eval/report.h"

namespace emo {

std::pair<std::string, std::string> gsm8k_request(const GsmItem& item, const Gsm8kEvalOptions& o) {
  if (o.protocol == "emo") return {gsm8k_context(item.question, o.shots), gsm8k_target(item)};
  if (o.protocol == "emo-perplexity") return gsm8k_perplexity_pair(item, o.shots);
  fail("--protocol", o.protocol, "unknown GSM8K protocol (emo, emo-perplexity)");
}

namespace {

void check_shots(const Gsm8kEvalOptions& o) {
  if (o.shots < 0 || o.shots > gsm8k_max_shots())
    fail("--shots", std::to_string(o.shots), "GSM8K has ", gsm8k_max_shots(), " STD:GSM8k exemplars; ask for 0 to ",
         gsm8k_max_shots());
}

}  // namespace

double Gsm8kBpbResult::bits_per_byte() const { return bytes ? -sum_logprob / (double(bytes) * std::log(2.0)) : 0; }

Gsm8kBpbResult evaluate_gsm8k_bpb(Model& model, const Tokenizer& tok, const std::vector<GsmSplitItem>& items,
                                  const Gsm8kEvalOptions& o, bool keep_token_logprobs) {
  check_shots(o);
  Gsm8kBpbResult result;
  std::vector<LoglikelihoodRequest> requests;
  for (const auto& it : items) {
    auto [ctx, cont] = gsm8k_request(it.item, o);
    Gsm8kScored e;
    e.id = it.id;
    e.line = it.line;
    e.prompt_sha256 = sha256_hex(ctx);
    e.target = cont;
    e.target_bytes = cont.size();
    result.examples.push_back(std::move(e));
    requests.push_back({std::move(ctx), std::move(cont)});
  }
  LoglikelihoodOptions lo;
  lo.batch = o.batch;
  lo.routing = o.routing;
  lo.share_prefix = o.share_prefix;
  lo.keep_token_logprobs = keep_token_logprobs;
  lo.progress = o.progress;
  auto scored = score_loglikelihood(model, tok, requests, lo, &result.stats);
  for (size_t i = 0; i < scored.size(); ++i) {
    Gsm8kScored& e = result.examples[i];
    e.sum_logprob = scored[i].sum_logprob;
    e.target_tokens = scored[i].tokens;
    e.truncated = scored[i].truncated;
    e.bits_per_byte = bits_per_byte(-e.sum_logprob, e.target_bytes);
    e.token_logprobs = std::move(scored[i].token_logprobs);
    result.sum_logprob += e.sum_logprob;
    result.bytes += e.target_bytes;
    result.tokens += uint64_t(e.target_tokens);
  }
  return result;
}

void gsm8k_grade(Gsm8kGenerated& e, const std::string& generated, const std::string& gold_answer) {
  e.output = gsm8k_stop_truncate(generated);
  e.extracted = gsm8k_extract_answer(e.output);
  e.gold = gsm8k_normalize_number(gsm8k_short_answer(gold_answer));
  e.correct = e.extracted && *e.extracted == e.gold;
  e.exact_match = gsm8k_score(generated, gold_answer);
}

Gsm8kGenerateResult evaluate_gsm8k_generate(Model& model, const Tokenizer& tok, const std::vector<GsmSplitItem>& items,
                                            const Gsm8kEvalOptions& o) {
  check_shots(o);
  Gsm8kGenerateResult result;
  std::vector<std::string> contexts;
  for (const auto& it : items) contexts.push_back(gsm8k_context(it.item.question, o.shots));
  GenerateUntilOptions go;
  go.max_new_tokens = o.max_new_tokens;
  go.stop_sequences = gsm8k_stop_sequences();
  go.stop_ids = default_stop_ids(model, tok);
  go.batch = o.batch;
  go.routing = o.routing;
  go.share_prefix = o.share_prefix;
  go.progress = o.progress;
  auto gens = generate_until(model, tok, contexts, go, &result.stats);
  for (size_t i = 0; i < items.size(); ++i) {
    Gsm8kGenerated e;
    e.id = items[i].id;
    e.line = items[i].line;
    e.prompt_sha256 = sha256_hex(contexts[i]);
    gsm8k_grade(e, gens[i].text, items[i].item.answer);
    e.finish_reason = gens[i].finish_reason;
    e.new_tokens = int64_t(gens[i].tokens.size());
    e.truncated = gens[i].truncated;
    e.tokens = gens[i].tokens;
    result.correct += e.correct;
    result.exact_match += e.exact_match;
    result.examples.push_back(std::move(e));
  }
  return result;
}

Json to_json(const Gsm8kScored& e) {
  Json j = {{"id", e.id},
            {"line", e.line},
            {"prompt_sha256", e.prompt_sha256},
            {"target", e.target},
            {"target_bytes", e.target_bytes},
            {"target_tokens", e.target_tokens},
            {"sum_logprob", e.sum_logprob},
            {"bits_per_byte", e.bits_per_byte},
            {"truncated", e.truncated}};
  if (!e.token_logprobs.empty()) j["token_logprobs"] = e.token_logprobs;
  return j;
}

Json to_json(const Gsm8kGenerated& e) {
  return {{"id", e.id},
          {"line", e.line},
          {"prompt_sha256", e.prompt_sha256},
          {"output", e.output},
          {"extracted", e.extracted ? Json(*e.extracted) : Json(nullptr)},
          {"gold", e.gold},
          {"correct", e.correct},
          {"exact_match", e.exact_match},
          {"finish_reason", e.finish_reason},
          {"new_tokens", e.new_tokens},
          {"truncated", e.truncated}};
}

Json summary_json(const Gsm8kBpbResult& r) {
  const auto& s = r.stats;
  return {{"metric", "bits_per_byte"},
          {"items", r.examples.size()},
          {"bits_per_byte", r.bits_per_byte()},
          {"sum_logprob", r.sum_logprob},
          {"target_bytes", r.bytes},
          {"target_tokens", r.tokens},
          {"nll_per_token", r.tokens ? -r.sum_logprob / double(r.tokens) : 0.0},
          {"truncated", s.truncated},
          {"seconds", s.seconds},
          {"tokens_per_second", s.tokens_per_second()},
          {"tokens_requested", s.tokens_requested},
          {"tokens_forwarded", s.tokens_forwarded},
          {"shared_prefix_tokens", s.shared_prefix}};
}

Json summary_json(const Gsm8kGenerateResult& r) {
  const auto& s = r.stats;
  std::map<std::string, size_t> reasons;
  for (const auto& e : r.examples) reasons[e.finish_reason]++;
  return {{"metric", "accuracy"},
          {"items", r.examples.size()},
          {"accuracy", accuracy_json(r.correct, r.examples.size())},
          {"exact_match", accuracy_json(r.exact_match, r.examples.size())},
          {"finish_reasons", reasons},
          {"truncated", s.truncated},
          {"seconds", s.seconds},
          {"new_tokens", s.new_tokens},
          {"tokens_per_second", s.new_tokens_per_second()},
          {"prompt_tokens", s.prompt_tokens},
          {"prompt_tokens_forwarded", s.prompt_tokens_forwarded},
          {"shared_prefix_tokens", s.shared_prefix}};
}

}  // namespace emo
