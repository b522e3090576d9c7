// emo merge: write retrained modules back into the full model (merge/merge.h: run_merge).
#include <optional>

#include "cli/common.h"
#include "core/util/error.h"
#include "core/util/log.h"
#include "core/util/progress.h"
#include "core/util/registry.h"
#include "merge/merge.h"

namespace emo::cli {

void add_merge(CLI::App& app) {
  struct Opts {
    std::string base, out, overlap = "error", non_moe_rule = "average";
    std::vector<std::string> modules;
    MergeOptions merge;
    bool no_routed = false, router_rows = false, shared = false, non_moe = false;
    bool strict = false, json = false, overwrite = false;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("merge", "Write retrained modules back into the full model");
  cmd->add_option("--base", o->base, "The full model the modules were extracted from")->required();
  cmd->add_option("--module", o->modules, "A module directory (repeatable: disjoint modules compose)")->required();
  cmd->add_option("--out", o->out, "Output checkpoint directory")->required();
  cmd->add_option("--mode", o->merge.mode, entries_help("How module tensors combine with the base:", merge_modes()))
      ->check(CLI::IsMember(entry_names(merge_modes())));
  cmd->add_option("--alpha", o->merge.alpha, "Module weight in average mode");
  cmd->add_flag("--no-routed", o->no_routed, "Do not carry the routed experts (e.g. only --non-moe)");
  cmd->add_flag("--router-rows", o->router_rows, "Also carry the carried experts' router rows");
  cmd->add_flag("--shared", o->shared, "Also carry the shared expert(s)");
  cmd->add_flag("--non-moe", o->non_moe, "Also carry attention, norms, embeddings, lm_head and dense MLPs");
  cmd->add_option("--overlap", o->overlap, entries_help("An expert or router row in several modules:", overlap_rules()))
      ->check(CLI::IsMember(entry_names(overlap_rules())));
  cmd->add_option("--non-moe-rule", o->non_moe_rule, "With --non-moe, a tensor in several modules: as --overlap")
      ->check(CLI::IsMember(entry_names(overlap_rules())));
  cmd->add_flag("--force", o->merge.force, "Accept modules cut from another base, and a base whose weights no longer "
                                          "match its provenance (recorded in provenance)");
  cmd->add_flag("--overwrite", o->overwrite, "Replace --out if it exists");
  cmd->add_flag("--strict", o->strict, "Exit non-zero when the merge changes nothing");
  cmd->add_flag("--json", o->json, "Print the result as JSON");
  cmd->footer(
      "Writes OUT: the base with the modules' experts (and what else is carried) put back, in the base's layout,\n"
      "sharding and dtype; its tokenizer files; provenance.yaml (base and module hashes, mode, per-layer changes) and\n"
      "README.md. Example: emo merge --base out/tiny --module out/math-module-ft --out out/tiny-merged");
  cmd->callback([o] {
    MergeRequest r{o->base, o->out, std::vector<fs::path>(o->modules.begin(), o->modules.end()), o->merge, o->overwrite,
                   globals().argv};
    r.options.carry = o->no_routed ? PartSet{} : PartSet{Part::RoutedExperts};
    if (o->router_rows) r.options.carry.add(Part::Router);
    if (o->shared) r.options.carry.add(Part::SharedExperts);
    if (o->non_moe) r.options.carry.add(PartSet::non_moe());
    r.options.overlap = find_overlap_rule(o->overlap, "--overlap").rule;
    r.options.non_moe_rule = find_overlap_rule(o->non_moe_rule, "--non-moe-rule").rule;
    std::optional<Progress> bar;
    MergeResult result = run_merge(r, [&](uint64_t done, uint64_t total) {
      if (!bar) bar.emplace("merge", total, "bytes");
      bar->update(done);
    });
    if (bar) bar->finish();
    if (o->json) print_json(result.to_json());
    else print_line(cat("wrote ", result.out.string(), " (", result.content_hash, "): ", result.report.tensors_changed,
                        " tensors changed, relative change ", result.report.relative_change));
    if (!result.report.changed()) {
      log_warn("the merge changed nothing: every carried tensor equals the base's");
      if (o->strict) throw ExitStatus{3};
    }
  });
}

EMO_REGISTER_COMMAND(110, add_merge);

}  // namespace emo::cli
