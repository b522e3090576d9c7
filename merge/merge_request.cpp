// emo merge's request, field by field: the flags of `emo merge` and the settings of a recipe
// merge step are these rows.
#include "core/util/registry.h"
#include "merge/merge.h"

namespace emo {

namespace {

using K = FieldSpec::Kind;
using Values = std::vector<std::string>;

// A boolean field that adds (or, with on = false, removes) a part of what merge carries.
Field<MergeRequest> carry_flag(const char* key, const char* help, PartSet parts, bool on = true) {
  return {field(key, K::Bool, help),
          [parts, on](MergeRequest& r, const Values&) { on ? r.options.carry.add(parts) : r.options.carry.remove(parts); }};
}

Field<MergeRequest> overlap_field(const char* key, const std::string& help, Overlap MergeOptions::*member) {
  return {field(key, K::String, help).one_of(entry_names(overlap_rules())),
          [key, member](MergeRequest& r, const Values& v) {
            r.options.*member = find_overlap_rule(field_text(key, v), std::string("--") + key).rule;
          }};
}

RequestSpec<MergeRequest> make_spec() {
  RequestSpec<MergeRequest> s;
  s.command = "merge";
  s.summary = "Write retrained modules back into the full model";
  s.footer =
      "Writes OUT: the base with the modules' experts (and what else is carried) put back, in the base's layout,\n"
      "sharding and dtype; its tokenizer files; provenance.yaml (base and module hashes, mode, per-layer changes) and\n"
      "README.md. Example: emo merge --base out/tiny --module out/math-module-ft --out out/tiny-merged";
  s.fields = {
      member_field(field("base", K::String, "The full model the modules were extracted from").must().reads(),
                   &MergeRequest::base),
      {field("module", K::List, "A module directory (repeatable: disjoint modules compose)").must().reads(),
       [](MergeRequest& r, const Values& v) { r.modules.assign(v.begin(), v.end()); }},
      member_field(field("out", K::String, "Output checkpoint directory").must().caller_owned(), &MergeRequest::out),
      {field("mode", K::String, entries_help("How module tensors combine with the base:", merge_modes()))
           .one_of(entry_names(merge_modes())),
       [](MergeRequest& r, const Values& v) { r.options.mode = field_text("mode", v); }},
      {field("alpha", K::Float, "Module weight in average mode"),
       [](MergeRequest& r, const Values& v) { r.options.alpha = field_float("alpha", v); }},
      carry_flag("no-routed", "Do not carry the routed experts (e.g. only --non-moe)", {Part::RoutedExperts}, false),
      carry_flag("router-rows", "Also carry the carried experts' router rows", {Part::Router}),
      carry_flag("shared", "Also carry the shared expert(s)", {Part::SharedExperts}),
      carry_flag("non-moe", "Also carry attention, norms, embeddings, lm_head and dense MLPs", PartSet::non_moe()),
      overlap_field("overlap", entries_help("An expert or router row in several modules:", overlap_rules()),
                    &MergeOptions::overlap),
      overlap_field("non-moe-rule", "With --non-moe, a tensor in several modules: as --overlap",
                    &MergeOptions::non_moe_rule),
      {field("force", K::Bool,
             "Accept modules cut from another base, and a base whose weights no longer match its provenance "
             "(recorded in provenance)")
           .caller_owned(),
       [](MergeRequest& r, const Values&) { r.options.force = true; }},
      member_field(field("overwrite", K::Bool, "Replace --out if it exists").caller_owned(), &MergeRequest::overwrite),
      member_field(field("strict", K::Bool, "Exit non-zero when the merge changes nothing"), &MergeRequest::strict),
  };
  return s;
}

}  // namespace

const RequestSpec<MergeRequest>& merge_request_spec() { return built_once<MergeRequest, make_spec>(); }

}  // namespace emo
