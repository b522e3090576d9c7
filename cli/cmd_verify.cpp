// emo verify PATH...: recompute each output's hash and compare it with its provenance.
#include "cli/common.h"
#include "core/util/error.h"
#include "recipes/lineage.h"

namespace emo::cli {

void add_verify(CLI::App& app) {
  struct Opts {
    std::vector<std::string> paths;
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("verify", "Recompute outputs' hashes and compare them with their provenance");
  cmd->add_option("paths,--model", o->paths, "Checkpoints or outputs written by emo")->required();
  cmd->add_flag("--json", o->json, "Print the results as JSON");
  cmd->footer(
      "Writes nothing. Reads every weight (a checkpoint's content hash is recomputed, never taken from provenance);\n"
      "exits non-zero naming the first output whose bytes changed. Example: emo verify out/quickstart/merge");
  cmd->callback([o] {
    Json results = Json::array();
    std::string first_bad;
    for (const auto& p : o->paths) {
      VerifyResult r = verify_output(p);
      results.push_back({{"path", r.path.string()}, {"kind", r.kind}, {"recorded", r.recorded}, {"actual", r.actual},
                         {"ok", r.ok()}});
      if (!o->json) print_line((r.ok() ? "ok        " : "CHANGED   ") + r.path.string() + "  " + r.actual);
      if (!r.ok() && first_bad.empty())
        first_bad = cat(r.path.string(), ": output_hash: provenance records ", r.recorded, " but the ", r.kind,
                        " now hashes to ", r.actual, " (edited or corrupted)");
    }
    if (o->json) print_json(results);
    if (!first_bad.empty()) {
      std::fprintf(stderr, "emo: error: %s\n", first_bad.c_str());
      throw ExitStatus{1};
    }
  });
}

EMO_REGISTER_COMMAND(140, add_verify);

}  // namespace emo::cli
