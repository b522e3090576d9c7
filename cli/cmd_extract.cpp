// emo extract: a standalone checkpoint of a module (surgery/extract_request.h: run_extract;
// its flags are extract_request_spec()'s fields, as are a recipe extract step's settings).
#include "cli/common.h"
#include "cli/request_flags.h"
#include "surgery/extract_request.h"

namespace emo::cli {

namespace {

// One bar per stage: routing the examples (tokens), then writing the module (bytes).
ExtractResult extract_with_progress(const ExtractRequest& r) {
  prepare_compute();
  StageBars bars;
  ExtractResult result = run_extract(r, [&](const std::string& stage, uint64_t done, uint64_t total) {
    bars.update(stage, done, total, stage == "route" ? "tokens" : "bytes");
  });
  bars.finish();
  return result;
}

void print_extract(const ExtractRequest&, const ExtractResult& result, bool json) {
  if (json) print_json(result.to_json());
  else print_line("wrote " + result.out.string() + " (" + result.content_hash + ")");
}

void add_extract(CLI::App& app) {
  add_request_command<ExtractRequest, ExtractResult>(app, extract_request_spec(), extract_with_progress, print_extract);
}

}  // namespace

EMO_REGISTER_COMMAND(90, add_extract);
static RequestStepRegistration extract_step_registration(request_step<ExtractRequest>(
    extract_request_spec(), [](const ExtractRequest& r) { extract_with_progress(r); }));

}  // namespace emo::cli
