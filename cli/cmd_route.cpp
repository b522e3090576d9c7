// emo route: routing statistics of a model on task examples (surgery/route_request.h:
// run_route; its flags are route_request_spec()'s fields, as are a recipe route step's).
#include "cli/common.h"
#include "cli/request_flags.h"
#include "core/util/error.h"
#include "surgery/route_request.h"

namespace emo::cli {

namespace {

RouteResult route_with_progress(const RouteRequest& r) {
  prepare_compute();
  StageBars bars;
  RouteResult result = run_route(r, [&](uint64_t done, uint64_t total) { bars.update("route", done, total, "tokens"); });
  bars.finish();
  return result;
}

void print_route(const RouteRequest&, const RouteResult& result, bool json) {
  if (json) print_json(result.to_json());
  else print_line(cat("wrote ", result.out.string(), ": ", result.examples, " examples, ", result.tokens, " tokens"));
}

void add_route(CLI::App& app) {
  add_request_command<RouteRequest, RouteResult>(app, route_request_spec(), route_with_progress, print_route,
                                                 "Print the summary as JSON");
}

}  // namespace

EMO_REGISTER_COMMAND(80, add_route);
static RequestStepRegistration route_step_registration(request_step<RouteRequest>(
    route_request_spec(), [](const RouteRequest& r) { route_with_progress(r); }));

}  // namespace emo::cli
