// emo diff: two checkpoints, tensor by tensor.
#include "cli/common.h"
#include "core/util/error.h"
#include "merge/diff.h"

namespace emo::cli {

void add_diff(CLI::App& app) {
  struct Opts {
    std::string a, b;
    bool json = false, all = false, exit_code = false;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("diff", "Compare two checkpoints tensor by tensor (any layout or sharding)");
  cmd->add_option("a", o->a, "First checkpoint")->required();
  cmd->add_option("b", o->b, "Second checkpoint")->required();
  cmd->add_flag("--json", o->json, "Print JSON");
  cmd->add_flag("--all", o->all, "List identical tensors too");
  cmd->add_flag("--exit-code", o->exit_code, "Exit 1 when anything differs (like git diff --exit-code)");
  cmd->footer("Writes nothing. Example: emo diff out/tiny out/tiny-merged --json");
  cmd->callback([o] {
    Checkpoint a = Checkpoint::open(o->a), b = Checkpoint::open(o->b);
    DiffReport r = diff_checkpoints(a, b);
    if (o->json) {
      print_json(r.to_json(o->all));
    } else {
      for (const auto& t : r.tensors) {
        if (t.status == "identical" && !o->all) continue;
        char line[512];
        if (t.status == "different")
          std::snprintf(line, sizeof line, "%-60s different  max |diff| %.3g  relative change %.3g", t.name.c_str(), t.max_abs,
                        t.relative_change);
        else std::snprintf(line, sizeof line, "%-60s %s", t.name.c_str(), t.status.c_str());
        print_line(line);
      }
      std::string changed;
      for (const auto& [part, c] : r.parts)
        if (c.changed) changed += cat(changed.empty() ? "" : ", ", part_name(part), " (", c.changed, " of ", c.tensors, ")");
      print_line("changed parts: " + (changed.empty() ? std::string("none") : changed));
      print_line(cat(r.identical, " identical, ", r.different, " different, ", r.only_a, " only in ", o->a, ", ", r.only_b,
                     " only in ", o->b, r.incompatible ? cat(", ", r.incompatible, " of other shape or dtype") : ""));
    }
    if (o->exit_code && !r.all_identical()) throw ExitStatus{1};
  });
}

EMO_REGISTER_COMMAND(115, add_diff);

}  // namespace emo::cli
