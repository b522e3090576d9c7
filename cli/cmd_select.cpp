// emo select: choose a module's experts (an experts file) from routing statistics
// (surgery/select_request.h: run_select; its flags are select_request_spec()'s fields, as
// are a recipe select step's settings).
#include <algorithm>
#include <cstdio>

#include "cli/common.h"
#include "cli/request_flags.h"
#include "core/util/error.h"
#include "surgery/select_request.h"
#include "surgery/selection.h"

namespace emo::cli {

namespace {

// `--method help`: the registered methods, one per line with its reference.
std::string methods_help() {
  std::string out = "selection methods:\n";
  for (const auto& m : selection_methods())
    out += "  " + m->name() + std::string(18 - std::min<size_t>(17, m->name().size()), ' ') + m->description() + "\n" +
           std::string(20, ' ') + "(" + m->reference() + ")\n";
  return out;
}

SelectResult select_with_progress(const SelectRequest& r) {
  prepare_compute();
  StageBars bars;
  SelectResult result = run_select(r, [&](const std::string& stage, uint64_t done, uint64_t total) {
    bars.update(stage, done, total, "tokens");
  });
  bars.finish();
  return result;
}

void print_select(const SelectRequest&, const SelectResult& result, bool json) {
  if (json) print_json(result.report);
  else print_line(cat("wrote ", result.out.string(), " (", result.method, ", module top-k ", result.module_top_k(), ")"));
}

void add_select(CLI::App& app) {
  // `--method help` lists the methods instead (the command only: a recipe step must name one).
  auto run = [](const SelectRequest& r) {
    if (r.method == "help") {
      std::fputs(methods_help().c_str(), stdout);
      throw ExitStatus{0};
    }
    return select_with_progress(r);
  };
  add_request_command<SelectRequest, SelectResult>(app, select_request_spec(), run, print_select,
                                                   "Print the report as JSON");
}

}  // namespace

EMO_REGISTER_COMMAND(85, add_select);
static RequestStepRegistration select_step_registration(request_step<SelectRequest>(
    select_request_spec(), [](const SelectRequest& r) { select_with_progress(r); }));

}  // namespace emo::cli
