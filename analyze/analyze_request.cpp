#include "analyze/analyze_request.h"

#include "core/model/loaded.h"
#include "core/util/error.h"
#include "core/util/version.h"

namespace emo {

Json AnalyzeResult::to_json() const {
  Json j = {{"out", out.string()}, {"usage", usage}};
  if (!clusters.is_null()) j["clusters"] = clusters;
  return j;
}

namespace {

// The token as text (its own bytes decoded), for cluster listings.
std::function<std::string(int64_t)> token_text_of(const Tokenizer& tok) {
  return [&tok](int64_t id) { return tok.decode({int32_t(id)}); };
}

Json corpus_header(const AnalyzeRequest& r, const LoadedModel& m, const AnalyzeCorpus& c, int64_t max_length) {
  return {{"model", r.model.string()},
          {"model_type", m.checkpoint->config().model_type()},
          {"data", r.source.path},
          {"experts", r.experts.empty() ? Json(nullptr) : Json(r.experts.string())},
          {"group_by", r.source.group_by},
          {"domains", c.domain_names},
          {"max_length", max_length},
          {"truncated_documents", c.truncated},
          {"emo_version", emo_version()},
          {"command", r.command_line}};
}

}  // namespace

AnalyzeResult run_analyze(const AnalyzeRequest& r, const std::function<void(uint64_t, uint64_t)>& progress) {
  if (!(r.top_fraction > 0 && r.top_fraction <= 1)) fail("--top-fraction", cat(r.top_fraction), "must be in (0, 1]");
  remove_stale_temporaries(r.out);
  LoadedModel m = load_model(r.model.string(), r.experts.string(), r.device, r.tokenizer.string());
  const int64_t max_length = r.max_length > 0 ? r.max_length : m.checkpoint->config().max_position_embeddings;
  const Tokenizer& tok = *m.tokenizer;
  AnalyzeCorpus corpus = load_corpus(r.source, [&tok](const std::string& t) { return tok.encode(t); }, max_length);
  AtomicDir out(r.out, r.overwrite);  // checked before the long pass: an existing OUT fails now
  AnalyzeOptions ao;
  ao.batch = r.batch;
  ao.top_fraction = r.top_fraction;
  ao.clusters = r.clusters;
  ao.routing = routing_of(m);
  ao.token_text = token_text_of(tok);
  ao.progress = [&](int64_t done, int64_t total) {
    if (progress) progress(uint64_t(done), uint64_t(total));
  };
  CorpusAnalysis a = analyze_corpus(*m.model, corpus, ao);
  Json header = corpus_header(r, m, corpus, max_length);
  Json j = {{"run", header}, {"analysis", a.to_json()}};
  write_file_atomic(out / "analysis.json", j.dump(1) + "\n");
  write_file_atomic(out / "report.html", render_corpus_report(a, header));
  out.commit();
  AnalyzeResult result{r.out, a.documents, a.tokens, a.usage.summary(), nullptr};
  if (a.clusters) {
    result.clusters = a.clusters->to_json();
    result.clusters.erase("clusters");
  }
  return result;
}

namespace {

using K = FieldSpec::Kind;
using Values = std::vector<std::string>;
using R = AnalyzeRequest;

// The rows usage and clusters share, in --help's order.
std::vector<Field<R>> corpus_fields() {
  return {
      member_field(field("model", K::String, "Checkpoint directory").must().reads(), &R::model),
      {field("data", K::String, "JSONL or JSONL.gz with a text field and a domain field").must().reads(),
       [](R& r, const Values& v) { r.source.path = field_text("data", v); }},
      member_field(field("out", K::String, "Directory to write: analysis.json and report.html").must().caller_owned(),
                   &R::out),
      {field("domain-field", K::String, "Field naming each document's domain"),
       [](R& r, const Values& v) { r.source.domain_field = field_text("domain-field", v); }},
      {field("text-field", K::String, "Field holding the text"),
       [](R& r, const Values& v) { r.source.text_field = field_text("text-field", v); }},
      {field("group-by", K::String, "Usage per 'domain' or per 'document'"),
       [](R& r, const Values& v) { r.source.group_by = field_text("group-by", v); }},
      {field("per-domain", K::Int, "At most this many documents of each domain (0: all)").count(),
       [](R& r, const Values& v) { r.source.per_domain = size_t(field_count("per-domain", v)); }},
      {field("limit", K::Int, "At most this many documents in all (0: all)").count(),
       [](R& r, const Values& v) { r.source.limit = size_t(field_count("limit", v)); }},
      member_field(field("max-length", K::Int, "Tokens per document, the rest cut (0: the model's context)"),
                   &R::max_length),
      member_field(field("batch", K::Int, "Documents per forward pass"), &R::batch),
      member_field(field("top-fraction", K::Float, "Share of experts compared by the Jaccard overlap"), &R::top_fraction),
      member_field(tokenizer_field(), &R::tokenizer),
      member_field(experts_field(), &R::experts),
      member_field(device_field(), &R::device),
      member_field(field("force", K::Bool, "Replace --out if it exists").caller_owned(), &R::overwrite),
  };
}

RequestSpec<R> usage_spec() {
  RequestSpec<R> s;
  s.command = "analyze usage";
  s.summary = "Expert usage per layer and domain: concentration and overlap";
  s.footer =
      "Writes OUT/analysis.json (per group and layer: mean router probability and top-k frequency of every routed\n"
      "expert, entropy, experts covering 50%/90%; per layer: Jaccard of the groups' top experts and cosine of their\n"
      "usage) and OUT/report.html (self-contained, heatmaps). Example:\n"
      "  emo analyze usage --model out/tiny --data data/corpus/valid.jsonl.gz --per-domain 40 --out out/usage";
  s.fields = corpus_fields();
  return s;
}

RequestSpec<R> clusters_spec() {
  RequestSpec<R> s;
  s.command = "analyze clusters";
  s.summary = "Cluster tokens by their router probabilities (k-means), plus usage";
  s.footer =
      "Writes what `usage` writes plus, per cluster, its size, most frequent tokens and domains; the clusters'\n"
      "domain purity and NMI with the domains; and document coherence (clusters per document, share of a document\n"
      "in its main cluster). Example:\n"
      "  emo analyze clusters --model out/tiny --data data/corpus/valid.jsonl.gz --per-domain 40 --k 8 --out out/cl";
  s.fields = corpus_fields();
  auto positive = checked_by([](const std::string& t) {
    if (field_int("k", {t}) <= 0) fail("--k", t, "must be a positive number");
  });
  for (auto f : {
           Field<R>{field("k", K::Int, "Number of clusters").must().checked(positive, "POSITIVE"),
                    [](R& r, const Values& v) { r.clusters.k = int(field_int("k", v)); }},
           Field<R>{field("fingerprint-layer", K::Int,
                          "Cluster on this MoE layer's probabilities (-1: all layers concatenated)"),
                    [](R& r, const Values& v) { r.clusters.fingerprint_layer = int(field_int("fingerprint-layer", v)); }},
           Field<R>{field("cap", K::Int, "At most this many token fingerprints (uniform reservoir sample)"),
                    [](R& r, const Values& v) { r.clusters.cap = field_int("cap", v); }},
           Field<R>{field("seed", K::Int, "Seed of the sample and of k-means++").count(),
                    [](R& r, const Values& v) { r.clusters.seed = field_count("seed", v); }},
           Field<R>{field("min-doc-tokens", K::Int, "Documents with fewer sampled tokens are left out of the coherence"),
                    [](R& r, const Values& v) { r.clusters.min_doc_tokens = int(field_int("min-doc-tokens", v)); }},
       })
    s.fields.push_back(f);
  return s;
}

}  // namespace

const RequestSpec<AnalyzeRequest>& analyze_usage_request_spec() { return built_once<AnalyzeRequest, usage_spec>(); }

const RequestSpec<AnalyzeRequest>& analyze_clusters_request_spec() { return built_once<AnalyzeRequest, clusters_spec>(); }

}  // namespace emo
