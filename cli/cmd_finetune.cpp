// emo finetune: flags -> FinetuneRequest -> run_finetune (finetune/finetune_request.h) ->
// one line (or JSON) from rank 0.
#include "cli/common.h"
#include "cli/request_flags.h"
#include "cli/training.h"
#include "finetune/finetune_request.h"

namespace emo::cli {

namespace {

// The request as this process runs it: --threads and the shipped data folder are emo's.
FinetuneResult finetune_here(FinetuneRequest r) {
  r.process.threads = globals().threads;
  r.data_root = data_root();
  return run_finetune(r);
}

void print_finetune(const FinetuneRequest&, const FinetuneResult& r, bool json) {
  if (r.rank0) print_train_result(r.result, r.out, json);
}

}  // namespace

void add_finetune(CLI::App& app) {
  add_request_command<FinetuneRequest, FinetuneResult>(app, finetune_request_spec(), finetune_here, print_finetune,
                                                       "Print the summary as JSON");
}

EMO_REGISTER_COMMAND(100, add_finetune);

static RequestStepRegistration finetune_step_registration(request_step<FinetuneRequest>(
    finetune_request_spec(), [](const FinetuneRequest& r) { finetune_here(r); }));

}  // namespace emo::cli
