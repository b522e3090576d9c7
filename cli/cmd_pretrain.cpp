// emo pretrain: flags -> PretrainRequest -> run_pretrain (pretrain/pretrain_request.h) ->
// one line (or JSON) from rank 0.
#include "cli/common.h"
#include "cli/request_flags.h"
#include "cli/training.h"
#include "pretrain/pretrain_request.h"

namespace emo::cli {

namespace {

// The request as this process runs it: --threads and the shipped tokenizers are emo's.
PretrainRun pretrain_here(PretrainRequest r) {
  r.process.threads = globals().threads;
  r.data_root = data_root();
  return run_pretrain(r);
}

void print_pretrain(const PretrainRequest& request, const PretrainRun& run, bool json) {
  if (!run.rank0) return;
  Json extra = {{"router", request.router}};
  if (parse_router_kind(request.router) == RouterKind::Emo) extra["pool"] = {run.result.pool.min, run.result.pool.max};
  print_train_result(run.result.train, run.out, json, extra, request.router + " router, ");
}

}  // namespace

void add_pretrain(CLI::App& app) {
  add_request_command<PretrainRequest, PretrainRun>(app, pretrain_request_spec(), pretrain_here, print_pretrain,
                                                    "Print the summary as JSON");
}

EMO_REGISTER_COMMAND(95, add_pretrain);

static RequestStepRegistration pretrain_step_registration(request_step<PretrainRequest>(
    pretrain_request_spec(), [](const PretrainRequest& r) { pretrain_here(r); }));

}  // namespace emo::cli
