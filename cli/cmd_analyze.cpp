// emo analyze: which experts inputs use (docs/analyze.md).
//   usage     per layer and domain (or document): expert usage, concentration, overlap
//   clusters  the same pass plus k-means over token router fingerprints: topic clusters
//             (EMO) vs word-type clusters (standard MoE), document coherence
//   prompt    the experts one input uses per layer, and which known modules cover them
// usage and clusters write OUT/analysis.json and OUT/report.html (self-contained HTML).
#include <cstdio>

#include "analyze/analyze.h"
#include "analyze/analyze_request.h"
#include "cli/common.h"
#include "cli/request_flags.h"
#include "core/util/error.h"
#include "core/util/progress.h"
#include "core/util/version.h"
#include "eval/report.h"

namespace emo::cli {

namespace {

// The token as text (its own bytes decoded), for prompt listings.
std::function<std::string(int64_t)> token_text_of(const Tokenizer& tok) {
  return [&tok](int64_t id) { return tok.decode({int32_t(id)}); };
}

std::string usage_row(const std::string& name, double entropy, double e50, double e90) {
  char line[200];
  std::snprintf(line, sizeof line, "%-20s %14.3f %11.2f %11.2f", name.substr(0, 20).c_str(), entropy, e50, e90);
  return line;
}

void print_corpus_summary(const AnalyzeRequest&, const AnalyzeResult& a, bool json) {
  if (json) return print_json(a.to_json());
  const Json& s = a.usage;
  const std::string out = a.out.string();
  print_line(cat("wrote ", out, "/analysis.json and ", out, "/report.html: ", a.documents, " documents, ", a.tokens,
                 " tokens"));
  print_line("group                 entropy(bits)  experts50%  experts90%");
  for (auto it = s["groups"].begin(); it != s["groups"].end(); ++it)
    print_line(usage_row(it.key(), (*it)["entropy_bits"].get<double>(), (*it)["experts_50"].get<double>(),
                         (*it)["experts_90"].get<double>()));
  print_line(usage_row("mean", s["mean_entropy_bits"].get<double>(), s["mean_experts_50"].get<double>(),
                       s["mean_experts_90"].get<double>()));
  if (s.contains("mean_jaccard") && !s["mean_jaccard"].is_null())
    print_line(cat("overlap between groups: mean Jaccard ", fixed(s["mean_jaccard"].get<double>(), 3),
                   ", mean cosine ", fixed(s["mean_cosine"].get<double>(), 3), ", mean correlation ",
                   fixed(s["mean_correlation"].get<double>(), 3)));
  const Json& c = a.clusters;
  if (c.is_null()) return;
  const Json& coherence = c["document_coherence"];
  print_line(cat("clusters: k ", c["k"].get<int64_t>(), ", ", c["tokens_sampled"].get<int64_t>(),
                 " tokens, domain purity ", fixed(c["domain_purity"].get<double>(), 3), ", NMI ",
                 fixed(c["nmi_cluster_domain"].get<double>(), 3), ", clusters per document ",
                 fixed(coherence["mean_clusters_per_document"].get<double>(), 2), ", main-cluster share ",
                 fixed(coherence["mean_dominant_cluster_share"].get<double>(), 3)));
}

AnalyzeResult analyze_with_progress(const AnalyzeRequest& r) {
  prepare_compute();
  StageBars bars;
  AnalyzeResult result = run_analyze(r, [&](uint64_t done, uint64_t total) { bars.update("analyze", done, total, "tokens"); });
  bars.finish();
  return result;
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
  add_request_command<AnalyzeRequest, AnalyzeResult>(*analyze, analyze_usage_request_spec(), analyze_with_progress,
                                                     print_corpus_summary, "Print the summary as JSON");
  add_request_command<AnalyzeRequest, AnalyzeResult>(*analyze, analyze_clusters_request_spec(), analyze_with_progress,
                                                     print_corpus_summary, "Print the summary as JSON");
  add_analyze_prompt(analyze);
}

EMO_REGISTER_COMMAND(88, add_analyze);
static RequestStepRegistration usage_step_registration(request_step<AnalyzeRequest>(
    analyze_usage_request_spec(), [](const AnalyzeRequest& r) { analyze_with_progress(r); }));
static RequestStepRegistration clusters_step_registration(request_step<AnalyzeRequest>(
    analyze_clusters_request_spec(), [](const AnalyzeRequest& r) { analyze_with_progress(r); }));

}  // namespace emo::cli
