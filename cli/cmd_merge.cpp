// emo merge: write retrained modules back into the full model (merge/merge.h: run_merge;
// its flags are merge_request_spec()'s fields, as are a recipe merge step's settings).
#include "cli/common.h"
#include "cli/request_flags.h"
#include "core/util/error.h"
#include "core/util/log.h"
#include "merge/merge.h"

namespace emo::cli {

namespace {

MergeResult merge_with_progress(const MergeRequest& r) {
  StageBars bars;
  MergeResult result = run_merge(r, [&](uint64_t done, uint64_t total) { bars.update("merge", done, total, "bytes"); });
  bars.finish();
  if (!result.report.changed()) log_warn("the merge changed nothing: every carried tensor equals the base's");
  return result;
}

void print_merge(const MergeRequest& r, const MergeResult& result, bool json) {
  if (json) print_json(result.to_json());
  else print_line(cat("wrote ", result.out.string(), " (", result.content_hash, "): ", result.report.tensors_changed,
                      " tensors changed, relative change ", result.report.relative_change));
  if (!result.report.changed() && r.strict) throw ExitStatus{3};
}

// A recipe step has no exit status of its own: --strict fails the step.
void merge_step(const MergeRequest& r) {
  MergeResult result = merge_with_progress(r);
  require(result.report.changed() || !r.strict, "merge", "strict",
          "the merge changed nothing: every carried tensor equals the base's");
}

void add_merge(CLI::App& app) {
  add_request_command<MergeRequest, MergeResult>(app, merge_request_spec(), merge_with_progress, print_merge);
}

}  // namespace

EMO_REGISTER_COMMAND(110, add_merge);
static RequestStepRegistration merge_step_registration(request_step<MergeRequest>(merge_request_spec(), merge_step));

}  // namespace emo::cli
