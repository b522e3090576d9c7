// emo eval suite and emo eval sweep: every task for a model and its modules side by side,
// and quality against the number of experts kept (eval/suite_request.h); printing here.
#include <cstdio>

#include "cli/common.h"
#include "cli/request_flags.h"
#include "core/util/log.h"
#include "core/util/registry.h"
#include "eval/report.h"
#include "eval/suite_request.h"

namespace emo::cli {

namespace {

// ---- suite and sweep -------------------------------------------------------------------

EvalReport suite_with_progress(EvalSuiteRequest r) {
  r.data_root = data_root();
  prepare_compute();
  return run_eval_suite(r, [](const std::string& name) { log_info("eval suite: ", name); });
}

void print_suite(const EvalSuiteRequest& r, const EvalReport& report, bool) {
  std::fputs(find_entry(report_formats(), r.format, "--format", "output format").render(report.json, report.table).c_str(), stdout);
}

EvalReport sweep_with_progress(EvalSweepRequest r) {
  r.data_root = data_root();
  prepare_compute();
  StageBars bars;
  SweepProgress p;
  p.route = [&](const std::string& stage, uint64_t done, uint64_t total) { bars.update(stage, done, total, "tokens"); };
  p.selecting = [](const std::string& what) { log_info("eval sweep: selecting, ", what); };
  p.point = [&](size_t done, size_t total, const std::string& what) {
    bars.finish();
    log_info("eval sweep [", done + 1, "/", total, "]: ", what);
  };
  EvalReport report = run_eval_sweep(r, p);
  bars.finish();
  return report;
}

void print_sweep(const EvalSweepRequest&, const EvalReport& report, bool json) {
  if (json) print_json(report.json);
  else std::fputs(render_text(report.table).c_str(), stdout);
}

}  // namespace

void add_eval_suite(CLI::App* eval) {
  add_request_command<EvalSuiteRequest, EvalReport>(*eval, eval_suite_request_spec(), suite_with_progress, print_suite,
                                                    "");  // --format says what to print
  add_request_command<EvalSweepRequest, EvalReport>(*eval, eval_sweep_request_spec(), sweep_with_progress, print_sweep,
                                                    "Print sweep.json instead of the table");
}

static RequestStepRegistration suite_step(request_step<EvalSuiteRequest>(
    eval_suite_request_spec(), [](const EvalSuiteRequest& r) { suite_with_progress(r); }));
static RequestStepRegistration sweep_step(request_step<EvalSweepRequest>(
    eval_sweep_request_spec(), [](const EvalSweepRequest& r) { sweep_with_progress(r); }));

}  // namespace emo::cli
