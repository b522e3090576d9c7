// emo merge: write retrained modules back into the full model.
#include "cli/common.h"
#include "core/checkpoint/summary.h"
#include "core/io/yaml.h"
#include "core/util/error.h"
#include "core/util/log.h"
#include "core/util/progress.h"
#include "merge/merge.h"
#include "surgery/extract.h"

namespace emo::cli {

void add_merge(CLI::App& app) {
  struct Opts {
    std::string base, out;
    std::vector<std::string> modules;
    MergeOptions merge;
    bool no_routed = false, strict = false, json = false, overwrite = false;
  };
  auto o = std::make_shared<Opts>();
  std::string modes = "How module tensors combine with the base:";
  for (const auto& m : merge_modes()) modes += "\n  " + m.name + ": " + m.description + " (" + m.reference + ")";
  auto* cmd = app.add_subcommand("merge", "Write retrained modules back into the full model");
  cmd->add_option("--base", o->base, "The full model the modules were extracted from")->required();
  cmd->add_option("--module", o->modules, "A module directory (repeatable: disjoint modules compose)")->required();
  cmd->add_option("--out", o->out, "Output checkpoint directory")->required();
  cmd->add_option("--mode", o->merge.mode, modes)->check(CLI::IsMember({"replace", "average"}));
  cmd->add_option("--alpha", o->merge.alpha, "Module weight in average mode");
  cmd->add_flag("--no-routed", o->no_routed, "Do not carry the routed experts (e.g. only --non-moe)");
  cmd->add_flag("--router-rows", o->merge.carry.router_rows, "Also carry the carried experts' router rows");
  cmd->add_flag("--shared", o->merge.carry.shared, "Also carry the shared expert(s)");
  cmd->add_flag("--non-moe", o->merge.carry.non_moe, "Also carry attention, norms, embeddings and lm_head");
  cmd->add_option("--overlap", o->merge.overlap, "An expert in several modules: error, average or first")
      ->check(CLI::IsMember({"error", "average", "first"}));
  cmd->add_option("--non-moe-rule", o->merge.non_moe_rule, "With --non-moe and several modules: average or error")
      ->check(CLI::IsMember({"average", "error"}));
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
    o->merge.carry.routed = !o->no_routed;
    Checkpoint base = Checkpoint::open(o->base);
    std::string base_hash = parent_content_hash(base, false);
    std::vector<Checkpoint> modules;
    for (const auto& m : o->modules) modules.push_back(Checkpoint::open(m));
    std::vector<const Checkpoint*> ptrs;
    std::vector<std::string> hashes;
    for (const auto& m : modules) ptrs.push_back(&m), hashes.push_back(parent_content_hash(m, false));
    std::vector<ModuleSource> sources = resolve_modules(base, base_hash, ptrs, hashes, o->merge);
    AtomicDir out(o->out, o->overwrite);
    MergeReport report;
    Progress bar("merge", base.store().total_bytes(), "bytes");
    Provenance prov("merge");
    prov.argv = globals().argv;
    prov.output_hash = write_merge(base, sources, o->merge, out.path(), report, [&](uint64_t d) { bar.update(d); });
    bar.finish();
    if (report.verified_base_hash != base_hash) {
      if (!o->merge.force)
        fail(o->base, "content hash", "its provenance says ", base_hash, " but its weights hash to ", report.verified_base_hash,
             ": the base changed after it was made (emo verify shows which tensor); --force merges anyway");
      prov.extra["base_hash_mismatch"] = report.verified_base_hash;
    }
    copy_extra_files(base, out.path());
    prov.add_parent("base", base.dir(), base_hash);
    Json per_module = Json::array();
    for (size_t i = 0; i < modules.size(); ++i) {
      prov.add_parent("module", modules[i].dir(), hashes[i]);
      per_module.push_back({{"path", o->modules[i]}, {"hash", hashes[i]}, {"maps_through", sources[i].relation}});
    }
    prov.settings["mode"] = o->merge.mode;
    prov.settings["alpha"] = o->merge.alpha;
    prov.settings["carry"] = json_to_yaml(o->merge.carry.to_json());
    prov.settings["overlap"] = o->merge.overlap;
    prov.settings["non_moe_rule"] = o->merge.non_moe_rule;
    prov.settings["force"] = o->merge.force;
    prov.extra["modules"] = json_to_yaml(per_module);
    prov.metrics["relative_change"] = report.relative_change;
    prov.metrics["tensors_changed"] = report.tensors_changed;
    prov.metrics["layers"] = json_to_yaml(report.layers);
    prov.finished = now_iso8601();
    prov.write(out.path());
    write_file_atomic(out / kModelCardFile,
                      model_card("Merge of " + std::to_string(modules.size()) + " module(s) into " + base.dir().filename().string(),
                                 base.config(), prov, "The base model with retrained modules written back by `emo merge`."));
    out.commit();
    Json j = {{"out", out.target().string()}, {"content_hash", prov.output_hash}, {"base_hash", base_hash},
              {"changed", report.changed()}, {"tensors_changed", report.tensors_changed},
              {"relative_change", report.relative_change}, {"layers", report.layers}};
    if (o->json) print_json(j);
    else print_line(cat("wrote ", out.target().string(), " (", prov.output_hash, "): ", report.tensors_changed,
                        " tensors changed, relative change ", report.relative_change));
    if (!report.changed()) {
      log_warn("the merge changed nothing: every carried tensor equals the base's");
      if (o->strict) throw ExitStatus{3};
    }
  });
}

EMO_REGISTER_COMMAND(110, add_merge);

}  // namespace emo::cli
