#include "eval/perplexity_request.h"

#include "core/model/loaded.h"
#include "core/util/error.h"

namespace emo {

const char* const kPoolHelp =
    "Route each window inside a pool of N routed experts per layer, its top N by the router probability summed "
    "over the window (allenai/EMO's eval_document_expert_pool); the pool sees the whole window, so the score is "
    "not causal. 0: every token routed on its own";

namespace {

Json report_json(const PerplexityRequest& r, const PplResult& result) {
  Json j = {{"model", r.model.string()},
            {"data", r.data},
            {"experts", r.experts.string()},
            {"window", r.window},
            {"pool", r.pool},
            {"tokens_per_second", result.tokens_per_second()},
            {"domains", Json::object()}};
  for (const auto& [domain, s] : result.by_domain)
    j["domains"][domain] = {{"loss", s.loss()},
                            {"perplexity", s.perplexity()},
                            {"bits_per_byte", s.bits_per_byte()},
                            {"tokens", s.tokens},
                            {"bytes", s.bytes},
                            {"documents", s.docs}};
  return j;
}

}  // namespace

PerplexityReport run_perplexity(const PerplexityRequest& r, const std::function<void(uint64_t, uint64_t)>& progress) {
  TextDocs docs = load_text_docs(r.data, r.filter);
  if (docs.docs.empty())
    fail(r.data, "", "no documents", r.filter.domain.empty() ? "" : " of domain " + r.filter.domain);
  LoadedModel m = load_model(r.model.string(), r.experts.string(), r.device, r.tokenizer.string());
  PplOptions po;
  po.window = r.window;
  po.batch = r.batch;
  po.pool = r.pool;
  po.routing = routing_of(m);
  po.progress = [&](uint64_t done, uint64_t total) {
    if (progress) progress(done, total);
  };
  PerplexityReport report;
  report.result = evaluate_perplexity(*m.model, *m.tokenizer, docs.docs, po);
  report.json = report_json(r, report.result);
  if (!r.out.empty()) write_file_atomic(r.out, report.json.dump(2) + "\n");
  return report;
}

namespace {

using K = FieldSpec::Kind;
using Values = std::vector<std::string>;

RequestSpec<PerplexityRequest> make_spec() {
  using R = PerplexityRequest;
  RequestSpec<R> s;
  s.command = "eval ppl";
  s.summary = "Per-domain loss, perplexity and bits per byte of a JSONL(.gz) corpus";
  s.footer =
      "Writes the result to --out if given (JSON), else only prints it. Example:\n"
      "  emo eval ppl --model out/tiny --data data/corpus/valid.jsonl.gz --domain math --limit 50";
  s.fields = {
      member_field(field("model", K::String, "Checkpoint directory").must().reads(), &R::model),
      member_field(field("data", K::String, "JSONL or JSONL.gz with a text field (and a domain field)").must().reads(),
                   &R::data),
      {field("domain", K::String, "Only documents of this domain"),
       [](R& r, const Values& v) { r.filter.domain = field_text("domain", v); }},
      {field("text-field", K::String, "Field holding the text"),
       [](R& r, const Values& v) { r.filter.text_field = field_text("text-field", v); }},
      {field("limit", K::Int, "At most this many documents").count(),
       [](R& r, const Values& v) { r.filter.limit = size_t(field_count("limit", v)); }},
      member_field(field("window", K::Int, "Tokens per scoring window"), &R::window),
      member_field(field("batch", K::Int, "Windows per forward pass"), &R::batch),
      {field("pool", K::Int, kPoolHelp).count(), [](R& r, const Values& v) { r.pool = int64_t(field_count("pool", v)); }},
      member_field(tokenizer_field(), &R::tokenizer),
      member_field(field("out", K::String, "Also write the JSON result to this file").caller_owned(), &R::out),
      member_field(experts_field(), &R::experts),
      member_field(device_field(), &R::device),
  };
  return s;
}

}  // namespace

const RequestSpec<PerplexityRequest>& perplexity_request_spec() { return built_once<PerplexityRequest, make_spec>(); }

}  // namespace emo
