// emo merge: write retrained modules back into the full model (merge/merge.h: run_merge;
// its flags are merge_request_spec()'s fields, as are a recipe merge step's settings).
#include <optional>

#include "cli/common.h"
#include "cli/request_flags.h"
#include "core/util/error.h"
#include "core/util/log.h"
#include "core/util/progress.h"
#include "merge/merge.h"

namespace emo::cli {

namespace {

MergeResult merge_with_progress(const MergeRequest& r) {
  std::optional<Progress> bar;
  MergeResult result = run_merge(r, [&](uint64_t done, uint64_t total) {
    if (!bar) bar.emplace("merge", total, "bytes");
    bar->update(done);
  });
  if (bar) bar->finish();
  if (!result.report.changed()) log_warn("the merge changed nothing: every carried tensor equals the base's");
  return result;
}

// A recipe's merge step: the request from the step's settings, no command line parsed.
void merge_step(const StepCall& call) {
  MergeRequest r = build_request(merge_request_spec(), call.args);
  r.out = call.out;
  r.command_line = step_command_line(call);
  MergeResult result = merge_with_progress(r);
  require(result.report.changed() || !r.strict, "step " + call.step->id, "strict",
          "the merge changed nothing: every carried tensor equals the base's");
}

}  // namespace

void add_merge(CLI::App& app) {
  std::shared_ptr<RequestFlags> flags;
  CLI::App* cmd = add_request_command(app, merge_request_spec(), flags);
  auto json = std::make_shared<bool>(false);
  cmd->add_flag("--json", *json, "Print the result as JSON");
  cmd->callback([flags, json] {
    MergeRequest r = build_request(merge_request_spec(), flags->given());
    r.command_line = globals().argv;
    MergeResult result = merge_with_progress(r);
    if (*json) print_json(result.to_json());
    else print_line(cat("wrote ", result.out.string(), " (", result.content_hash, "): ", result.report.tensors_changed,
                        " tensors changed, relative change ", result.report.relative_change));
    if (!result.report.changed() && r.strict) throw ExitStatus{3};
  });
}

EMO_REGISTER_COMMAND(110, add_merge);
static RequestStepRegistration merge_step_registration({request_step_type(merge_request_spec()), merge_step});

}  // namespace emo::cli
