// emo init: a randomly initialised checkpoint in exact HF layout, from a preset or a
// config file, deterministic for a seed, written streaming (core/checkpoint/init.h:
// run_init; flags and recipe settings are its request's fields).
#include "cli/common.h"
#include "cli/request_flags.h"
#include "core/checkpoint/init.h"
#include "core/util/log.h"

namespace emo::cli {

namespace {

// The tokenizers come from this emo's data folder.
InitResult init_here(const InitRequest& r) {
  InitRequest with_data = r;
  with_data.data_root = data_root();
  return run_init(with_data);
}

void print_init(const InitRequest&, const InitResult& result, bool json) {
  if (json)
    print_json({{"out", result.out.string()}, {"content_hash", result.content_hash}, {"parameters", result.parameters}});
  else
    print_line("wrote " + result.out.string() + " (" + human_count(double(result.parameters)) + " parameters, " +
               result.content_hash + ")");
}

void add_init(CLI::App& app) {
  add_request_command<InitRequest, InitResult>(app, init_request_spec(), init_here, print_init);
}

}  // namespace

EMO_REGISTER_COMMAND(20, add_init);
static RequestStepRegistration init_step_registration(request_step<InitRequest>(
    init_request_spec(), [](const InitRequest& r) { init_here(r); }));

}  // namespace emo::cli
