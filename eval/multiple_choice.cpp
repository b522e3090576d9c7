#include "eval/multiple_choice.h"

#include "core/io/jsonl.h"
#include "core/io/sha256.h"
#include "core/util/error.h"
#include "eval/report.h"

namespace emo {

std::vector<McItem> read_mc_jsonl(const std::string& path) {
  JsonlReader reader(path);
  std::vector<McItem> items;
  Json j;
  while (reader.next(j)) {
    const std::string where = cat("line ", reader.line());
    McItem it;
    it.line = reader.line();
    auto str = [&](const char* key, std::string& out) {
      auto f = j.find(key);
      if (f == j.end() || f->is_null()) return false;
      require(f->is_string(), path, where, "\"", key, "\" must be a string");
      out = f->get<std::string>();
      return true;
    };
    bool has_q = str("question", it.question);
    bool has_query = str("query", it.query);
    require(has_q || has_query, path, where, "missing key \"question\" (or \"query\")");
    str("subject", it.subject);
    auto id = j.find("id");
    if (id != j.end() && !id->is_null())
      it.id = id->is_string() ? id->get<std::string>() : id->dump();
    else
      it.id = std::to_string(items.size());
    auto ch = j.find("choices");
    require(ch != j.end(), path, where, "missing key \"choices\"");
    require(ch->is_array() && ch->size() >= 2, path, where, "\"choices\" must be an array of at least two strings");
    for (const auto& c : *ch) {
      require(c.is_string(), path, where, "every choice must be a string");
      require(!c.get<std::string>().empty(), path, where, "empty choice");
      it.choices.push_back(c.get<std::string>());
    }
    auto ans = j.find("answer");
    require(ans != j.end(), path, where, "missing key \"answer\"");
    require(ans->is_number_integer(), path, where, "\"answer\" must be the index of the correct choice");
    int64_t a = ans->get<int64_t>();
    require(a >= 0 && a < int64_t(it.choices.size()), path, where, "\"answer\" ", a, " is not an index into the ",
            it.choices.size(), " choices");
    it.answer = int(a);
    items.push_back(std::move(it));
  }
  if (items.empty()) fail(path, "", "no multiple-choice rows (an empty file)");
  return items;
}

std::string mc_doc_to_text(const McItem& item, const std::string& tmpl) {
  if (!item.query.empty()) return item.query;
  if (tmpl == "rc") return "Question: " + item.question + "\nAnswer:";
  if (tmpl == "plain") return item.question;
  fail("--template", tmpl, "unknown template (rc, plain)");
}

namespace {

std::string format_subject(std::string s) {
  for (char& c : s)
    if (c == '_') c = ' ';
  return s;
}

std::string description_for(const McItem& item, const std::string& description, const std::string& fewshot_file) {
  const std::string key = "{subject}";
  std::string out = description;
  for (size_t at = out.find(key); at != std::string::npos; at = out.find(key, at)) {
    require(!item.subject.empty(), fewshot_file.empty() ? "--description" : fewshot_file, cat("item ", item.id),
            "the description names {subject} but the item has no \"subject\"");
    std::string s = format_subject(item.subject);
    out.replace(at, key.size(), s);
    at += s.size();
  }
  return out;
}

}  // namespace

std::string mc_context(const McItem& item, const std::vector<McItem>& fewshot, const McPromptOptions& o,
                       const std::string& fewshot_file) {
  const std::string text = mc_doc_to_text(item, o.template_name);
  const std::string description = description_for(item, o.description, fewshot_file);
  if (o.shots < 0) fail("--shots", std::to_string(o.shots), "must be 0 or more");
  if (o.shots == 0) return description + text;
  bool by_subject = false;
  for (const auto& f : fewshot) by_subject = by_subject || !f.subject.empty();
  by_subject = by_subject && !item.subject.empty();
  std::string labeled;
  int used = 0;
  for (const auto& f : fewshot) {
    if (used == o.shots) break;
    if (by_subject && f.subject != item.subject) continue;
    labeled += mc_doc_to_text(f, o.template_name) + " " + f.choices[size_t(f.answer)] + "\n\n";
    ++used;
  }
  if (used < o.shots)
    fail(fewshot_file.empty() ? "--shots" : fewshot_file, by_subject ? "subject " + item.subject : "", "asked for ",
         o.shots, " few-shot examples but only ", used, " are available",
         fewshot.empty() ? " (no --fewshot file)" : "");
  return description + labeled + text;
}

int first_argmax(const std::vector<double>& v) {
  int best = 0;
  for (size_t i = 1; i < v.size(); ++i)
    if (v[i] > v[size_t(best)]) best = int(i);
  return best;
}

void mc_predict(McScored& e) {
  const size_t n = e.sum_logprob.size();
  if (e.tokens.size() != n || e.chars.size() != n ||
      (!e.sum_logprob_uncond.empty() && e.sum_logprob_uncond.size() != n))
    fail("multiple choice", e.id, "inconsistent per-choice scores");
  std::vector<double> per_token(n), per_char(n), uncond(n);
  for (size_t c = 0; c < n; ++c) {
    // MCAccuracy.compute_for_requests: max(num_tokens, 1), max(len(continuation), 1).
    per_token[c] = e.sum_logprob[c] / double(std::max<int64_t>(e.tokens[c], 1));
    per_char[c] = e.sum_logprob[c] / double(std::max<size_t>(e.chars[c], 1));
    if (!e.sum_logprob_uncond.empty()) uncond[c] = e.sum_logprob[c] - e.sum_logprob_uncond[c];
  }
  e.pred_raw = first_argmax(e.sum_logprob);
  e.pred_per_token = first_argmax(per_token);
  e.pred_per_char = first_argmax(per_char);
  e.pred_uncond = e.sum_logprob_uncond.empty() ? -1 : first_argmax(uncond);
}

McResult evaluate_mc(Model& model, const Tokenizer& tok, const std::vector<McItem>& items,
                     const std::vector<McItem>& fewshot, const McOptions& o, const std::string& fewshot_file) {
  McResult result;
  result.uncond = o.uncond;
  std::vector<LoglikelihoodRequest> requests;
  std::vector<size_t> first_request;
  for (const auto& it : items) {
    std::string ctx = mc_context(it, fewshot, o.prompt, fewshot_file);
    McScored e;
    e.id = it.id;
    e.line = it.line;
    e.prompt_sha256 = sha256_hex(ctx);
    e.gold = it.answer;
    first_request.push_back(requests.size());
    for (const auto& c : it.choices) {
      std::string cont = " " + c;
      e.chars.push_back(utf8_length(cont));
      requests.push_back({ctx, cont});
    }
    result.examples.push_back(std::move(e));
  }
  LoglikelihoodOptions lo;
  lo.batch = o.batch;
  lo.routing = o.routing;
  lo.share_prefix = o.share_prefix;
  lo.progress = o.progress;
  auto scored = score_loglikelihood(model, tok, requests, lo, &result.stats);
  // The unconditioned requests share no prefix with the others: scored on their own.
  std::vector<LoglikelihoodResult> uncond_scored;
  if (o.uncond) {
    std::vector<LoglikelihoodRequest> uncond;
    for (const auto& it : items)
      for (const auto& c : it.choices) uncond.push_back({"Answer:", " " + c});
    LoglikelihoodStats us;
    uncond_scored = score_loglikelihood(model, tok, uncond, lo, &us);
    result.stats.seconds += us.seconds;
    result.stats.tokens_forwarded += us.tokens_forwarded;
    result.stats.tokens_requested += us.tokens_requested;
    result.stats.tokens_scored += us.tokens_scored;
    result.stats.truncated += us.truncated;
  }
  for (size_t k = 0; k < items.size(); ++k) {
    McScored& e = result.examples[k];
    const size_t n = items[k].choices.size();
    for (size_t c = 0; c < n; ++c) {
      const LoglikelihoodResult& r = scored[first_request[k] + c];
      e.sum_logprob.push_back(r.sum_logprob);
      e.tokens.push_back(r.tokens);
      if (o.uncond) e.sum_logprob_uncond.push_back(uncond_scored[first_request[k] + c].sum_logprob);
    }
    mc_predict(e);
    result.acc_raw += e.pred_raw == e.gold;
    result.acc_per_token += e.pred_per_token == e.gold;
    result.acc_per_char += e.pred_per_char == e.gold;
    result.acc_uncond += o.uncond && e.pred_uncond == e.gold;
  }
  return result;
}

Json to_json(const McScored& e) {
  Json j = {{"id", e.id},
            {"line", e.line},
            {"prompt_sha256", e.prompt_sha256},
            {"gold", e.gold},
            {"sum_logprob", e.sum_logprob},
            {"tokens", e.tokens},
            {"chars", e.chars},
            {"predicted_raw", e.pred_raw},
            {"predicted_per_token", e.pred_per_token},
            {"predicted_per_char", e.pred_per_char},
            {"acc_raw", e.pred_raw == e.gold},
            {"acc_per_token", e.pred_per_token == e.gold},
            {"acc_per_char", e.pred_per_char == e.gold}};
  if (!e.sum_logprob_uncond.empty()) {
    j["sum_logprob_uncond"] = e.sum_logprob_uncond;
    j["predicted_uncond"] = e.pred_uncond;
    j["acc_uncond"] = e.pred_uncond == e.gold;
  }
  return j;
}

Json summary_json(const McResult& r, const std::string& primary) {
  const size_t n = r.examples.size();
  Json j = {{"items", n},
            {"acc_raw", accuracy_json(r.acc_raw, n)},
            {"acc_per_token", accuracy_json(r.acc_per_token, n)},
            {"acc_per_char", accuracy_json(r.acc_per_char, n)}};
  if (r.uncond) j["acc_uncond"] = accuracy_json(r.acc_uncond, n);
  if (!j.contains(primary))
    fail("--primary-metric", primary, "not computed (acc_raw, acc_per_token, acc_per_char, acc_uncond with --uncond)");
  j["primary_metric"] = primary;
  j["primary_score"] = j[primary]["value"];
  const auto& s = r.stats;
  j["seconds"] = s.seconds;
  j["tokens_per_second"] = s.tokens_per_second();
  j["tokens_requested"] = s.tokens_requested;
  j["tokens_forwarded"] = s.tokens_forwarded;
  j["shared_prefix_tokens"] = s.shared_prefix;
  j["truncated"] = s.truncated;
  return j;
}

}  // namespace emo
