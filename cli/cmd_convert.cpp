// emo convert: the same model in another expert layout, shard size or float dtype
// (core/checkpoint/convert.h: run_convert; flags and recipe settings are its fields).
#include "cli/common.h"
#include "cli/request_flags.h"
#include "core/checkpoint/convert.h"

namespace emo::cli {

namespace {

ConvertResult convert_with_progress(const ConvertRequest& r) {
  StageBars bars;
  ConvertResult result =
      run_convert(r, [&](uint64_t done, uint64_t total) { bars.update("convert", done, total, "bytes"); });
  bars.finish();
  return result;
}

void print_convert(const ConvertRequest&, const ConvertResult& result, bool json) {
  if (json) print_json({{"out", result.out.string()}, {"content_hash", result.content_hash}});
  else print_line("wrote " + result.out.string() + " (" + result.content_hash + ")");
}

void add_convert(CLI::App& app) {
  add_request_command<ConvertRequest, ConvertResult>(app, convert_request_spec(), convert_with_progress, print_convert);
}

}  // namespace

EMO_REGISTER_COMMAND(30, add_convert);
static RequestStepRegistration convert_step_registration(request_step<ConvertRequest>(
    convert_request_spec(), [](const ConvertRequest& r) { convert_with_progress(r); }));

}  // namespace emo::cli
