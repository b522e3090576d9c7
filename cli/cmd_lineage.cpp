// emo lineage PATH: how an output was made, from its provenance down to the roots.
#include "cli/common.h"
#include "recipes/lineage.h"

namespace emo::cli {

void add_lineage(CLI::App& app) {
  struct Opts {
    std::string path;
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("lineage", "Show how a checkpoint or output was made: the tree of its inputs");
  cmd->add_option("path,--model", o->path, "A checkpoint, or any output a command or recipe step wrote")->required();
  cmd->add_flag("--json", o->json, "Print the tree as JSON");
  cmd->footer(
      "Writes nothing. Each line: how the parent used it (role), the command that made it, its hash, the recipe step,\n"
      "its path; roots (data files, checkpoints from elsewhere) have no command. Example: emo lineage out/quickstart/merge");
  cmd->callback([o] {
    LineageNode root = lineage_of(o->path);
    if (o->json) print_json(lineage_json(root));
    else std::printf("%s", format_lineage(root).c_str());
  });
}

EMO_REGISTER_COMMAND(130, add_lineage);

}  // namespace emo::cli
