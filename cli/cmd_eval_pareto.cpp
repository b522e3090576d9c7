// emo eval pareto: quality against memory (eval/pareto.h: run_pareto_report; its flags are
// pareto_request_spec()'s fields, as are a recipe pareto step's settings).
#include <cstdio>

#include "cli/common.h"
#include "cli/request_flags.h"
#include "core/util/log.h"
#include "eval/pareto.h"

namespace emo::cli {

namespace {

ParetoReport pareto_with_progress(ParetoRequest r) {
  if (r.corpus.empty()) r.corpus = corpus_split_file("valid").string();
  prepare_compute();
  return run_pareto_report(r, [](size_t done, size_t total, const std::string& what) {
    log_info("eval pareto [", done, "/", total, "]: ", what);
  });
}

void print_pareto(const ParetoRequest&, const ParetoReport& report, bool json) {
  if (json) print_json(report.json);
  else std::fputs(render_text(report.table).c_str(), stdout);
}

}  // namespace

void add_eval_pareto(CLI::App* eval) {
  add_request_command<ParetoRequest, ParetoReport>(*eval, pareto_request_spec(), pareto_with_progress, print_pareto,
                                                   "Print pareto.json instead of the table");
}

static RequestStepRegistration pareto_step_registration(request_step<ParetoRequest>(
    pareto_request_spec(), [](const ParetoRequest& r) { pareto_with_progress(r); }));

}  // namespace emo::cli
