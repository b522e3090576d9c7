// emo analyze: which experts inputs use (docs/analyze.md).
//   usage     per layer and domain (or document): expert usage, concentration, overlap
//   clusters  the same pass plus k-means over token router fingerprints: topic clusters
//             (EMO) vs word-type clusters (standard MoE), document coherence
//   prompt    the experts one input uses per layer, and which known modules cover them
// usage and clusters write OUT/analysis.json and OUT/report.html (self-contained HTML).
#include <cstdio>

#include "analyze/analyze.h"
#include "cli/common.h"
#include "core/util/error.h"
#include "core/util/progress.h"
#include "core/util/version.h"
#include "eval/report.h"

namespace emo::cli {

namespace {

struct CorpusFlags {
  std::string model, data, out, experts, device = "auto", tokenizer;
  CorpusSource source;
  int64_t max_length = 0, batch = 8;
  double top_fraction = 0.25;
  bool json = false, force = false;
  ClusterOptions clusters;

  void add(CLI::App* cmd) {
    cmd->add_option("--model", model, "Checkpoint directory")->required();
    cmd->add_option("--data", data, "JSONL or JSONL.gz with a text field and a domain field")->required();
    cmd->add_option("--out", out, "Directory to write: analysis.json and report.html")->required();
    cmd->add_option("--domain-field", source.domain_field, "Field naming each document's domain");
    cmd->add_option("--text-field", source.text_field, "Field holding the text");
    cmd->add_option("--group-by", source.group_by, "Usage per 'domain' or per 'document'");
    cmd->add_option("--per-domain", source.per_domain, "At most this many documents of each domain (0: all)");
    cmd->add_option("--limit", source.limit, "At most this many documents in all (0: all)");
    cmd->add_option("--max-length", max_length, "Tokens per document, the rest cut (0: the model's context)");
    cmd->add_option("--batch", batch, "Documents per forward pass");
    cmd->add_option("--top-fraction", top_fraction, "Share of experts compared by the Jaccard overlap");
    cmd->add_option("--tokenizer", tokenizer, "tokenizer.json (default: the model's)");
    add_model_flags(cmd, experts, device);
    cmd->add_flag("--force", force, "Replace --out if it exists");
    cmd->add_flag("--json", json, "Print the summary as JSON");
  }
};

// The token as text (its own bytes decoded), for cluster and prompt listings.
std::function<std::string(int64_t)> token_text_of(const Tokenizer& tok) {
  return [&tok](int64_t id) { return tok.decode({int32_t(id)}); };
}

Json corpus_header(const CorpusFlags& f, const LoadedModel& m, const AnalyzeCorpus& c, int64_t max_length) {
  Json argv = globals().argv;
  return {{"model", f.model},
          {"model_type", m.checkpoint->config().model_type()},
          {"data", f.data},
          {"experts", f.experts.empty() ? Json(nullptr) : Json(f.experts)},
          {"group_by", f.source.group_by},
          {"domains", c.domain_names},
          {"max_length", max_length},
          {"truncated_documents", c.truncated},
          {"emo_version", emo_version()},
          {"command", argv}};
}

void print_corpus_summary(const CorpusAnalysis& a, const std::string& out) {
  Json s = a.usage.summary();
  print_line(cat("wrote ", out, "/analysis.json and ", out, "/report.html: ", a.documents, " documents, ", a.tokens,
                 " tokens"));
  print_line("group                 entropy(bits)  experts50%  experts90%");
  for (auto it = s["groups"].begin(); it != s["groups"].end(); ++it) {
    char line[200];
    std::snprintf(line, sizeof line, "%-20s %14.3f %11.2f %11.2f", it.key().substr(0, 20).c_str(),
                  (*it)["entropy_bits"].get<double>(), (*it)["experts_50"].get<double>(),
                  (*it)["experts_90"].get<double>());
    print_line(line);
  }
  char line[200];
  std::snprintf(line, sizeof line, "%-20s %14.3f %11.2f %11.2f", "mean", s["mean_entropy_bits"].get<double>(),
                s["mean_experts_50"].get<double>(), s["mean_experts_90"].get<double>());
  print_line(line);
  if (s.contains("mean_jaccard") && !s["mean_jaccard"].is_null())
    print_line(cat("overlap between groups: mean Jaccard ", fixed(s["mean_jaccard"].get<double>(), 3),
                   ", mean cosine ", fixed(s["mean_cosine"].get<double>(), 3), ", mean correlation ",
                   fixed(s["mean_correlation"].get<double>(), 3)));
  if (a.clusters)
    print_line(cat("clusters: k ", a.clusters->options.k, ", ", a.clusters->sampled, " tokens, domain purity ",
                   fixed(a.clusters->domain_purity, 3), ", NMI ", fixed(a.clusters->nmi, 3),
                   ", clusters per document ", fixed(a.clusters->mean_clusters_per_doc, 2),
                   ", main-cluster share ", fixed(a.clusters->mean_dominant_share, 3)));
}

// The shared body of usage and clusters: read, load, one pass, write both files.
void run_corpus(const CorpusFlags& f) {
  if (!(f.top_fraction > 0 && f.top_fraction <= 1)) fail("--top-fraction", cat(f.top_fraction), "must be in (0, 1]");
  remove_stale_temporaries(f.out);
  LoadedModel m = load_model(f.model, f.experts, f.device, f.tokenizer);
  int64_t max_length = f.max_length > 0 ? f.max_length : m.checkpoint->config().max_position_embeddings;
  CorpusSource source = f.source;
  source.path = f.data;
  const Tokenizer& tok = *m.tokenizer;
  AnalyzeCorpus corpus = load_corpus(source, [&tok](const std::string& t) { return tok.encode(t); }, max_length);
  AtomicDir out(f.out, f.force);  // checked before the long pass: an existing --out fails now
  AnalyzeOptions ao;
  ao.batch = f.batch;
  ao.top_fraction = f.top_fraction;
  ao.clusters = f.clusters;
  ao.routing = routing_of(m);
  ao.token_text = token_text_of(tok);
  Progress bar("analyze", uint64_t(corpus.tokens), "tokens");
  ao.progress = [&bar](int64_t done, int64_t) { bar.update(uint64_t(done)); };
  CorpusAnalysis a = analyze_corpus(*m.model, corpus, ao);
  bar.finish();
  Json header = corpus_header(f, m, corpus, max_length);
  Json j = {{"run", header}, {"analysis", a.to_json()}};
  write_file_atomic(out / "analysis.json", j.dump(1) + "\n");
  write_file_atomic(out / "report.html", render_corpus_report(a, header));
  out.commit();
  if (f.json) {
    Json s = {{"out", f.out}, {"usage", a.usage.summary()}};
    if (a.clusters) {
      Json c = a.clusters->to_json();
      c.erase("clusters");
      s["clusters"] = c;
    }
    print_json(s);
  } else {
    print_corpus_summary(a, f.out);
  }
}

void add_analyze_usage(CLI::App* analyze) {
  auto f = std::make_shared<CorpusFlags>();
  auto* cmd = analyze->add_subcommand("usage", "Expert usage per layer and domain: concentration and overlap");
  f->add(cmd);
  cmd->footer(
      "Writes OUT/analysis.json (per group and layer: mean router probability and top-k frequency of every routed\n"
      "expert, entropy, experts covering 50%/90%; per layer: Jaccard of the groups' top experts and cosine of their\n"
      "usage) and OUT/report.html (self-contained, heatmaps). Example:\n"
      "  emo analyze usage --model out/tiny --data data/corpus/valid.jsonl.gz --per-domain 40 --out out/usage");
  cmd->callback([f] { run_corpus(*f); });
}

void add_analyze_clusters(CLI::App* analyze) {
  auto f = std::make_shared<CorpusFlags>();
  auto* cmd = analyze->add_subcommand("clusters", "Cluster tokens by their router probabilities (k-means), plus usage");
  f->add(cmd);
  cmd->add_option("--k", f->clusters.k, "Number of clusters")->required()->check(CLI::PositiveNumber);
  cmd->add_option("--fingerprint-layer", f->clusters.fingerprint_layer,
                  "Cluster on this MoE layer's probabilities (-1: all layers concatenated)");
  cmd->add_option("--cap", f->clusters.cap, "At most this many token fingerprints (uniform reservoir sample)");
  cmd->add_option("--seed", f->clusters.seed, "Seed of the sample and of k-means++");
  cmd->add_option("--min-doc-tokens", f->clusters.min_doc_tokens,
                  "Documents with fewer sampled tokens are left out of the coherence");
  cmd->footer(
      "Writes what `usage` writes plus, per cluster, its size, most frequent tokens and domains; the clusters'\n"
      "domain purity and NMI with the domains; and document coherence (clusters per document, share of a document\n"
      "in its main cluster). Example:\n"
      "  emo analyze clusters --model out/tiny --data data/corpus/valid.jsonl.gz --per-domain 40 --k 8 --out out/cl");
  cmd->callback([f] { run_corpus(*f); });
}

void add_analyze_prompt(CLI::App* analyze) {
  struct Opts {
    std::string model, text, out, device = "auto", tokenizer;
    std::vector<std::string> modules;
    bool json = false, force = false;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = analyze->add_subcommand("prompt", "The experts one input uses per layer, and the modules covering them");
  cmd->add_option("--model", o->model, "Checkpoint directory")->required();
  cmd->add_option("--text", o->text, "The input text")->required();
  cmd->add_option("--module", o->modules, "A known module's experts file (repeatable; NAME=FILE names it)");
  cmd->add_option("--out", o->out, "Also write prompt.json and report.html into this directory");
  cmd->add_option("--tokenizer", o->tokenizer, "tokenizer.json (default: the model's)");
  cmd->add_option("--device", o->device, "auto, cpu, cuda or cuda:N");
  cmd->add_flag("--force", o->force, "Replace --out if it exists");
  cmd->add_flag("--json", o->json, "Print JSON");
  cmd->footer(
      "Prints per MoE layer the routed experts the tokens chose (most often first) and, per --module, the share of\n"
      "those choices the module keeps. Example:\n"
      "  emo analyze prompt --model out/tiny --text 'def add(a, b):' --module code=code.experts.json");
  cmd->callback([o] {
    std::vector<ModuleFile> modules;
    for (const auto& spec : o->modules) {
      ModuleFile m;
      auto eq = spec.find('=');
      m.path = eq == std::string::npos ? spec : spec.substr(eq + 1);
      m.name = eq == std::string::npos ? fs::path(spec).stem().string() : spec.substr(0, eq);
      m.experts = ExpertSelection::load(m.path);
      modules.push_back(std::move(m));
    }
    if (!o->out.empty()) remove_stale_temporaries(o->out);
    LoadedModel m = load_model(o->model, "", o->device, o->tokenizer);
    auto ids32 = m.tokenizer->encode(o->text);
    std::vector<int64_t> ids(ids32.begin(), ids32.end());
    int64_t context = m.checkpoint->config().max_position_embeddings;
    if (int64_t(ids.size()) > context) fail("--text", "", ids.size(), " tokens, more than the context (", context, ")");
    PromptAnalysis a = analyze_prompt(*m.model, ids, modules, token_text_of(*m.tokenizer));
    Json argv = globals().argv;
    Json header = {{"model", o->model}, {"text", o->text}, {"tokens", ids.size()}, {"emo_version", emo_version()},
                   {"command", argv}};
    Json j = {{"run", header}, {"analysis", a.to_json()}};
    if (!o->out.empty()) {
      AtomicDir out(o->out, o->force);
      write_file_atomic(out / "prompt.json", j.dump(1) + "\n");
      write_file_atomic(out / "report.html", render_prompt_report(a, header));
      out.commit();
    }
    if (o->json) {
      print_json(j);
      return;
    }
    for (const auto& l : a.layers) {
      std::string used;
      for (int64_t e : l.used) used += (used.empty() ? "" : " ") + cat(e);
      print_line(cat("layer ", l.layer, ": ", l.used.size(), " of ", l.routed, " routed experts used: ", used));
    }
    for (const auto& mc : a.modules) {
      std::string per;
      for (double v : mc.per_layer) per += (per.empty() ? "" : " ") + fixed(v, 3);
      print_line(cat("module ", mc.name, ": mean coverage ", fixed(mc.mean, 3), mc.covers_all ? " (covers all)" : "",
                     ", per layer ", per));
    }
  });
}

}  // namespace

void add_analyze(CLI::App& app) {
  auto* analyze = app.add_subcommand("analyze", "Which experts inputs use: per-domain usage, overlap, token clusters");
  analyze->require_subcommand(1);
  analyze->fallthrough();
  add_analyze_usage(analyze);
  add_analyze_clusters(analyze);
  add_analyze_prompt(analyze);
}

EMO_REGISTER_COMMAND(88, add_analyze);

}  // namespace emo::cli
