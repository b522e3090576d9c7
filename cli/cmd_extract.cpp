// emo extract: a standalone checkpoint of a module (surgery/extract_request.h: run_extract;
// its flags are extract_request_spec()'s fields, as are a recipe extract step's settings).
#include <map>
#include <optional>

#include "cli/common.h"
#include "cli/request_flags.h"
#include "core/util/progress.h"
#include "surgery/extract_request.h"

namespace emo::cli {

namespace {

// One bar per stage: routing the examples (tokens), then writing the module (bytes).
ExtractResult extract_with_progress(const ExtractRequest& r) {
  prepare_compute();
  std::map<std::string, std::optional<Progress>> bars;
  ExtractResult result = run_extract(r, [&](const std::string& stage, uint64_t done, uint64_t total) {
    auto& bar = bars[stage];
    if (!bar) bar.emplace(stage, total, stage == "route" ? "tokens" : "bytes");
    bar->update(done);
  });
  for (auto& [stage, bar] : bars)
    if (bar) bar->finish();
  return result;
}

// A recipe's extract step: the request from the step's settings, no command line parsed.
void extract_step(const StepCall& call) {
  ExtractRequest r = build_request(extract_request_spec(), call.args);
  r.out = call.out;
  r.command_line = step_command_line(call);
  extract_with_progress(r);
}

}  // namespace

void add_extract(CLI::App& app) {
  std::shared_ptr<RequestFlags> flags;
  CLI::App* cmd = add_request_command(app, extract_request_spec(), flags);
  auto json = std::make_shared<bool>(false);
  cmd->add_flag("--json", *json, "Print the result as JSON");
  cmd->callback([flags, json] {
    ExtractRequest r = build_request(extract_request_spec(), flags->given());
    r.command_line = globals().argv;
    ExtractResult result = extract_with_progress(r);
    if (*json) print_json(result.to_json());
    else print_line("wrote " + result.out.string() + " (" + result.content_hash + ")");
  });
}

EMO_REGISTER_COMMAND(90, add_extract);
static RequestStepRegistration extract_step_registration({request_step_type(extract_request_spec()), extract_step});

}  // namespace emo::cli
