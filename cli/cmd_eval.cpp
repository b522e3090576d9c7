// emo eval: the evaluation protocols (docs/eval.md), each a request of eval/ (flags and
// recipe settings from its fields) and its printing here.
//   ppl    per-domain loss, perplexity and bits per byte of a corpus (eval/perplexity_request.h)
//   gsm8k  the paper's GSM8K: bits per byte of the normalised solution (default), or
//          greedy generation with answer extraction (--generate) (eval/gsm8k_request.h)
//   mc     multiple choice in OLMES' RC format (ARC, MMLU, HellaSwag, ... as JSONL)
//   suite  all of them, for a model and its modules / merged models side by side
//   sweep  quality against the number of experts kept: a module chosen per budget,
//          evaluated masked, with a random baseline (both cli/cmd_eval_suite.cpp)
//   pareto quality against memory (cli/cmd_eval_pareto.cpp)
#include <cstdio>
#include <optional>

#include "cli/common.h"
#include "cli/request_flags.h"
#include "core/util/error.h"
#include "core/util/log.h"
#include "core/util/progress.h"
#include "eval/gsm8k_request.h"
#include "eval/perplexity_request.h"
#include "eval/report.h"

namespace emo::cli {

void add_eval_suite(CLI::App* eval);   // cli/cmd_eval_suite.cpp: suite and sweep
void add_eval_pareto(CLI::App* eval);  // cli/cmd_eval_pareto.cpp

namespace {

std::function<void(size_t, size_t)> progress_to(Progress& bar) {
  return [&bar](size_t done, size_t) { bar.update(done); };
}

// ---- ppl -------------------------------------------------------------------------------

PerplexityReport ppl_with_progress(const PerplexityRequest& r) {
  prepare_compute();
  Progress bar("eval ppl", 0, "tokens");
  PerplexityReport report = run_perplexity(r, [&](uint64_t done, uint64_t) { bar.update(done); });
  bar.finish();
  return report;
}

void print_ppl(const PerplexityRequest&, const PerplexityReport& report, bool json) {
  if (json) return print_json(report.json);
  print_line(cat("domain        documents     tokens    loss  perplexity  bits/byte"));
  for (const auto& [domain, s] : report.result.by_domain) {
    char line[160];
    std::snprintf(line, sizeof line, "%-12s %10llu %10llu %7.4f %11.3f %10.4f", domain.c_str(),
                  (unsigned long long)s.docs, (unsigned long long)s.tokens, s.loss(), s.perplexity(), s.bits_per_byte());
    print_line(line);
  }
}


// ---- gsm8k -----------------------------------------------------------------------------

Json gsm8k_with_progress(Gsm8kRequest r) {
  r.data_root = data_root();
  prepare_compute();
  std::optional<Progress> bar;
  Json summary = run_gsm8k(r, [&](size_t done, size_t total) {
    if (!bar) bar.emplace(r.generate ? "eval gsm8k generate" : "eval gsm8k", total, "items");
    bar->update(done);
  });
  if (bar) bar->finish();
  return summary;
}

void print_gsm8k(const Gsm8kRequest& r, const Json& summary, bool json) {
  if (json) return print_json(summary);
  print_line(cat("items             ", summary["items"].get<size_t>()));
  if (r.generate) {
    const Json& a = summary["accuracy"];
    const Json& em = summary["exact_match"];
    print_line(cat("accuracy          ", fixed(100 * a["value"].get<double>(), 2), "%  (95% CI ",
                   fixed(100 * a["ci95"][0].get<double>(), 2), "-", fixed(100 * a["ci95"][1].get<double>(), 2), ")"));
    print_line(cat("exact match       ", fixed(100 * em["value"].get<double>(), 2), "%  (the paper's oe-eval metric)"));
    print_line(cat("tokens/s          ", fixed(summary["tokens_per_second"].get<double>(), 1), " (generated)"));
  } else {
    print_line(cat("bits per byte     ", fixed(summary["bits_per_byte"].get<double>(), 4)));
    print_line(cat("target tokens     ", summary["target_tokens"].get<uint64_t>(), " (",
                   summary["target_bytes"].get<uint64_t>(), " bytes)"));
    print_line(cat("tokens/s          ", fixed(summary["tokens_per_second"].get<double>(), 1)));
  }
}

Json mc_with_progress(const McRequest& r) {
  prepare_compute();
  Progress bar("eval mc", 0, "requests");
  Json summary = run_mc(r, progress_to(bar));
  bar.finish();
  return summary;
}

void print_mc(const McRequest& r, const Json& summary, bool json) {
  if (json) return print_json(summary);
  Table t;
  t.header = {"metric", "accuracy %", "95% CI"};
  for (const char* k : {"acc_raw", "acc_per_token", "acc_per_char", "acc_uncond"}) {
    if (!summary.contains(k)) continue;
    const Json& a = summary[k];
    t.rows.push_back({std::string(k) + (r.primary == k ? " *" : ""), fixed(100 * a["value"].get<double>(), 2),
                      fixed(100 * a["ci95"][0].get<double>(), 2) + "-" + fixed(100 * a["ci95"][1].get<double>(), 2)});
  }
  std::fputs(render_text(t).c_str(), stdout);
  print_line(cat(summary["items"].get<size_t>(), " questions, ", fixed(summary["tokens_per_second"].get<double>(), 1),
                 " tokens/s; * = primary metric"));
}



}  // namespace

void add_eval(CLI::App& app) {
  auto* eval =
      app.add_subcommand("eval", "Evaluate a model or module: perplexity, GSM8K, multiple choice, suite, budget sweep");
  eval->require_subcommand(1);
  eval->fallthrough();
  add_request_command<PerplexityRequest, PerplexityReport>(*eval, perplexity_request_spec(), ppl_with_progress, print_ppl,
                                                           "Print JSON");
  add_request_command<Gsm8kRequest, Json>(*eval, gsm8k_request_spec(), gsm8k_with_progress, print_gsm8k,
                                          "Print the summary as JSON");
  add_request_command<McRequest, Json>(*eval, mc_request_spec(), mc_with_progress, print_mc, "Print the summary as JSON");
  add_eval_suite(eval);
  add_eval_pareto(eval);
}

EMO_REGISTER_COMMAND(70, add_eval);

static RequestStepRegistration ppl_step(request_step<PerplexityRequest>(
    perplexity_request_spec(), [](const PerplexityRequest& r) { ppl_with_progress(r); }));
static RequestStepRegistration gsm8k_step(request_step<Gsm8kRequest>(
    gsm8k_request_spec(), [](const Gsm8kRequest& r) { gsm8k_with_progress(r); }));
static RequestStepRegistration mc_step(request_step<McRequest>(mc_request_spec(),
                                                               [](const McRequest& r) { mc_with_progress(r); }));

}  // namespace emo::cli
