#include "merge/merge.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "core/checkpoint/content_hash.h"
#include "core/checkpoint/provenance.h"
#include "core/checkpoint/summary.h"
#include "core/io/yaml.h"
#include "core/util/fs.h"
#include "core/util/worker.h"
#include "core/io/sha256.h"
#include "core/util/error.h"
#include "surgery/extract.h"

namespace emo {

std::vector<ModuleSource> resolve_modules(const Checkpoint& base, const std::string& base_hash,
                                          const std::vector<const Checkpoint*>& modules,
                                          const std::vector<std::string>& module_hashes, const MergeOptions& o) {
  std::vector<ModuleSource> out;
  const ModelConfig& bc = base.config();
  auto base_specs = bc.layers();
  for (size_t i = 0; i < modules.size(); ++i) {
    const Checkpoint& m = *modules[i];
    const std::string dir = m.dir().string();
    auto info = ModuleInfo::of(m.config());
    if (!info) fail(dir, "config.json: emo_module", "missing: not a module made by emo extract (nothing says where its experts came from)");
    ModuleSource src{&m, module_hashes[i], "", {}};
    if (info->parent_hash == base_hash) {
      src.relation = "parent", src.to_base = info->experts;
    } else if (info->root_hash == base_hash) {
      src.relation = "root", src.to_base = info->root_experts;
    } else if (o.force) {
      // --force: the caller vouches for the base; map through the parent relation.
      src.relation = "forced", src.to_base = info->experts;
    } else {
      fail(dir, "emo_module.parent_hash", "module was cut from ", info->parent_hash, " (root ", info->root_hash,
           "), not from this base (", base_hash, "); --force merges it anyway");
    }
    if (m.config().family != bc.family) fail(dir, "model_type", m.config().model_type(), " module, ", bc.model_type(), " base");
    // Every non-expert dimension must agree, and each mapping must name real base experts.
    const ModelConfig& mc = m.config();
    const Family& f = *bc.family;
    const std::pair<std::string, std::pair<int64_t, int64_t>> dims[] = {
        {"hidden_size", {mc.hidden_size, bc.hidden_size}},
        {f.keys.expert_width, {mc.intermediate_size, bc.intermediate_size}},
        {"vocab_size", {mc.vocab_size, bc.vocab_size}},
        {"num_hidden_layers", {mc.num_hidden_layers, bc.num_hidden_layers}},
        {"num_attention_heads", {mc.num_attention_heads, bc.num_attention_heads}},
        {"num_key_value_heads", {mc.num_key_value_heads, bc.num_key_value_heads}},
        {f.keys.shared_width, {mc.shared_expert_intermediate_size.value_or(0), bc.shared_expert_intermediate_size.value_or(0)}},
        {f.keys.dense_width, {mc.dense_intermediate_size.value_or(0), bc.dense_intermediate_size.value_or(0)}}};
    for (const auto& [key, values] : dims)
      if (values.first != values.second)
        fail(dir, "config.json: " + key, "module has ", values.first, ", base ", values.second);
    auto mspecs = m.config().layers();
    for (const auto& [l, ids] : src.to_base) {
      if (l < 0 || size_t(l) >= base_specs.size() || base_specs[size_t(l)].dense())
        fail(dir, cat("emo_module.experts.", l), "not an MoE layer of the base");
      if (int64_t(ids.size()) != mspecs[size_t(l)].num_experts)
        fail(dir, cat("emo_module.experts.", l), "maps ", ids.size(), " experts but the module's layer has ", mspecs[size_t(l)].num_experts);
      for (int64_t e : ids)
        if (e < 0 || e >= base_specs[size_t(l)].num_experts)
          fail(dir, cat("emo_module.experts.", l), "expert ", e, " out of range for the base (", base_specs[size_t(l)].num_experts, ")");
    }
    out.push_back(std::move(src));
  }
  return out;
}

namespace {

// Where one piece of a base tensor comes from in a module: the whole tensor, or a router row.
struct Contribution {
  const ModuleSource* module;
  std::string name;   // the module's canonical tensor
  int64_t row = -1;   // module router row, for router contributions
};

struct TensorPlan {
  std::vector<Contribution> whole;                      // experts and non-MoE tensors
  std::map<int64_t, std::vector<Contribution>> rows;    // router: base row -> contributions
  bool touched() const { return !whole.empty() || !rows.empty(); }
};

void check_same_shape(const TensorView& base, const TensorView& mod, const std::string& module_dir) {
  if (base.shape != mod.shape)
    fail(module_dir, mod.name, "shape ", shape_str(mod.shape), " but the base's ", base.name, " is ", shape_str(base.shape));
  if (!dtype_is_float(base.dtype) || !dtype_is_float(mod.dtype))
    fail(module_dir, mod.name, "only float tensors can be merged (", dtype_name(mod.dtype), ")");
}

std::map<std::string, TensorPlan> plan_merge(const Checkpoint& base, const std::vector<ModuleSource>& modules,
                                             const MergeOptions& o) {
  const ModelConfig& bc = base.config();
  auto base_specs = bc.layers();
  std::map<std::string, TensorPlan> plan;
  for (const auto& m : modules) {
    const ModelConfig& mc = m.checkpoint->config();
    auto mspecs = mc.layers();
    const std::string mdir = m.checkpoint->dir().string();
    for (const auto& [l, ids] : m.to_base) {
      const LayerSpec& ms = mspecs[size_t(l)];
      for (int64_t i = 0; i < int64_t(ids.size()); ++i) {
        bool shared = i >= ms.num_routed();
        bool base_shared = ids[size_t(i)] >= base_specs[size_t(l)].num_routed();
        if (shared != base_shared) fail(mdir, cat("emo_module.experts.", l), "module expert ", i, " and base expert ", ids[size_t(i)], " are not both shared or both routed");
        if (!o.carry.has(shared ? Part::SharedExperts : Part::RoutedExperts)) continue;
        for (Proj p : {Proj::Gate, Proj::Up, Proj::Down}) {
          std::string bname = expert_tensor_name(*bc.family, l, int(ids[size_t(i)]), p);
          std::string mname = expert_tensor_name(*mc.family, l, int(i), p);
          check_same_shape(base.view(bname), m.checkpoint->view(mname), mdir);
          plan[bname].whole.push_back({&m, mname});
        }
        if (o.carry.has(Part::Router)) {
          std::string r = router_name(*bc.family, l);
          check_same_shape(base.view(r).slice0(ids[size_t(i)]), m.checkpoint->view(router_name(*mc.family, l)).slice0(i), mdir);
          plan[r].rows[ids[size_t(i)]].push_back({&m, router_name(*mc.family, l), i});
        }
      }
    }
    // Whole tensors: the non-MoE ones, and (as shared experts) Qwen2-MoE's shared expert MLP
    // and its gate, which a module keeps whole. Experts and router rows went per expert above.
    for (const auto& t : base.tensors()) {
      if (t.role == Role::Expert || t.role == Role::Router || !o.carry.has(part_of_role(t.role))) continue;
      check_same_shape(base.view(t), m.checkpoint->view(t.name), mdir);
      plan[t.name].whole.push_back({&m, t.name});
    }
  }
  // Overlaps: one piece from several modules needs a rule.
  for (const auto& [name, p] : plan) {
    const Part part = part_of_role(base.tensor(name).role);
    const bool non_moe = PartSet::non_moe().has(part);
    const Overlap rule = o.rule_for(part);
    auto check = [&](const std::vector<Contribution>& c, const std::string& what) {
      if (c.size() > 1 && rule == Overlap::Error)
        fail(c[1].module->checkpoint->dir().string(), what, "also carried by ", c[0].module->checkpoint->dir().string(),
             non_moe ? " (--non-moe-rule average to average them)" : " (give --overlap average or first)");
    };
    check(p.whole, name);
    for (const auto& [row, c] : p.rows) check(c, cat(name, " row ", row));
  }
  return plan;
}

// Reads `n` floats of a view from element `offset` into out (float32).
void read_f32(const TensorView& v, uint64_t offset, size_t n, float* out) {
  convert_to_f32(v.data + offset * dtype_size(v.dtype), n, v.dtype, out);
}

struct Change {
  double delta2 = 0, base2 = 0;
};

// Blends one span of elements: base span and contributions of the same span in their modules.
// Several modules carrying the same piece are averaged (rule "average") or the first
// listed wins ("first"); "error" never gets here (plan_merge refused it).
void blend_span(const TensorView& base, const std::vector<TensorView>& mods, uint64_t offset, size_t n,
                Overlap rule, const MergeOptions& o, const MergeMode& mode, std::vector<float>& b, std::vector<float>& m,
                std::vector<float>& tmp, std::vector<float>& out, Change& change) {
  b.resize(n), m.resize(n), tmp.resize(n), out.resize(n);
  read_f32(base, offset, n, b.data());
  read_f32(mods[0], offset, n, m.data());
  if (mods.size() > 1 && rule == Overlap::Average) {
    for (size_t k = 1; k < mods.size(); ++k) {
      read_f32(mods[k], offset, n, tmp.data());
      for (size_t i = 0; i < n; ++i) m[i] += tmp[i];
    }
    const float inv = 1.0f / float(mods.size());
    for (size_t i = 0; i < n; ++i) m[i] *= inv;
  }
  mode.blend(b.data(), m.data(), out.data(), n, o.alpha);
  for (size_t i = 0; i < n; ++i) {
    double d = double(out[i]) - double(b[i]);
    change.delta2 += d * d;
    change.base2 += double(b[i]) * double(b[i]);
  }
}

}  // namespace

std::string write_merge(const Checkpoint& base, const std::vector<ModuleSource>& modules, const MergeOptions& o,
                        const fs::path& dir, MergeReport& report, const std::function<void(uint64_t)>& progress) {
  const MergeMode& mode = find_merge_mode(o.mode);
  if (mode.uses_alpha && !(o.alpha >= 0 && o.alpha <= 1)) fail("--alpha", std::to_string(o.alpha), "must be in [0, 1]");
  std::map<std::string, TensorPlan> plan = plan_merge(base, modules, o);  // every check before writing

  const ModelConfig& bc = base.config();
  std::vector<OutputTensor> tensors;
  for (const auto& t : base.tensors()) tensors.push_back({t, base.view(t).dtype});
  std::map<int, Change> by_layer;
  std::map<int, std::set<int>> experts_changed;
  TensorDigests base_digests_of_changed;
  std::vector<float> b, m, tmp, out;
  std::vector<uint8_t> bytes;
  uint64_t done = 0;
  auto emit = [&](const TensorView& bv, const std::vector<TensorView>& mods, Overlap rule, DType dtype,
                  const ByteSink& sink, Change& change) {
    const uint64_t count = bv.nbytes / dtype_size(bv.dtype), chunk = uint64_t(4) << 20;
    for (uint64_t off = 0; off < count; off += chunk) {
      size_t n = size_t(std::min(chunk, count - off));
      blend_span(bv, mods, off, n, rule, o, mode, b, m, tmp, out, change);
      bytes.resize(n * dtype_size(dtype));
      convert_from_f32(out.data(), n, dtype, bytes.data());
      sink(bytes.data(), bytes.size());
    }
  };
  TensorDigests out_digests;
  // Hashes the base's bytes of each changed tensor on its own thread, beside the writer
  // and its output hasher: done inline it doubled the merge's wall time. One task at a
  // time (start() waits for the previous), so the digests map needs no lock.
  Worker base_hasher;
  std::string hash = write_model(dir, bc, tensors, write_options_like(base), [&](const OutputTensor& t, const ByteSink& sink) {
    TensorView bv = base.view(t.tensor);
    done += bv.nbytes;
    auto it = plan.find(t.tensor.name);
    if (it == plan.end()) {
      stream_view(bv, t.dtype, sink);
      if (progress) progress(done);
      return;
    }
    const TensorPlan& p = it->second;
    base_hasher.start([&base_digests_of_changed, bv, name = t.tensor.name] {
      Sha256 h;  // the base's own bytes of a changed tensor, to verify the base hash
      hash_mapped_range(h, *bv.owner, bv.data, bv.nbytes);
      base_digests_of_changed[name] = {bv.dtype, bv.shape, bv.nbytes, h.hex()};
    });
    Change& change = by_layer[t.tensor.layer];
    if (!p.whole.empty()) {
      std::vector<TensorView> mods;
      for (const auto& c : p.whole) mods.push_back(c.module->checkpoint->view(c.name));
      bool expert = t.tensor.role == Role::Expert;
      emit(bv, mods, o.rule_for(part_of_role(t.tensor.role)), t.dtype, sink, change);
      if (expert) experts_changed[t.tensor.layer].insert(t.tensor.expert);
    } else {
      for (int64_t r = 0; r < bv.shape[0]; ++r) {
        auto rit = p.rows.find(r);
        if (rit == p.rows.end()) {
          stream_view(bv.slice0(r), t.dtype, sink);
          continue;
        }
        std::vector<TensorView> mods;
        for (const auto& c : rit->second) mods.push_back(c.module->checkpoint->view(c.name).slice0(c.row));
        emit(bv.slice0(r), mods, o.overlap, t.dtype, sink, change);
      }
    }
    if (progress) progress(done);
  }, &out_digests);
  base_hasher.wait();
  // The base's content hash from its own bytes: what we copied plus what we replaced.
  TensorDigests base_digests = out_digests;
  for (const auto& [name, d] : base_digests_of_changed) base_digests[name] = d;
  report.verified_base_hash = combine_content_hash(bc, base_digests);
  double delta2 = 0, base2 = 0;
  for (const auto& [layer, c] : by_layer) {
    delta2 += c.delta2, base2 += c.base2;
    std::string key = layer < 0 ? "non_layer" : std::to_string(layer);
    report.layers[key] = {{"experts_carried", experts_changed[layer].size()},
                          {"relative_change", c.base2 > 0 ? std::sqrt(c.delta2 / c.base2) : 0.0}};
  }
  report.relative_change = base2 > 0 ? std::sqrt(delta2 / base2) : 0.0;
  for (const auto& [name, d] : base_digests_of_changed)
    if (out_digests.at(name).sha256 != d.sha256) ++report.tensors_changed;
  return hash;
}

namespace {

void record_merge(Provenance& prov, const MergeRequest& r, const std::vector<Checkpoint>& modules,
                  const std::vector<std::string>& hashes, const std::vector<ModuleSource>& sources,
                  const MergeResult& result) {
  const MergeOptions& o = r.options;
  Json per_module = Json::array();
  for (size_t i = 0; i < modules.size(); ++i) {
    prov.add_parent("module", modules[i].dir(), hashes[i]);
    per_module.push_back({{"path", r.modules[i].string()}, {"hash", hashes[i]}, {"maps_through", sources[i].relation}});
  }
  prov.settings["mode"] = o.mode;
  prov.settings["alpha"] = o.alpha;
  prov.settings["carry"] = json_to_yaml(Json(o.carry.names()));
  prov.settings["overlap"] = overlap_name(o.overlap);
  prov.settings["non_moe_rule"] = overlap_name(o.non_moe_rule);
  prov.settings["force"] = o.force;
  prov.extra["modules"] = json_to_yaml(per_module);
  prov.metrics["relative_change"] = result.report.relative_change;
  prov.metrics["tensors_changed"] = result.report.tensors_changed;
  prov.metrics["layers"] = json_to_yaml(result.report.layers);
}

}  // namespace

Json MergeResult::to_json() const {
  return {{"out", out.string()},
          {"content_hash", content_hash},
          {"base_hash", base_hash},
          {"changed", report.changed()},
          {"tensors_changed", report.tensors_changed},
          {"relative_change", report.relative_change},
          {"layers", report.layers}};
}

MergeResult run_merge(const MergeRequest& r, const std::function<void(uint64_t, uint64_t)>& progress) {
  Checkpoint base = Checkpoint::open(r.base);
  MergeResult result;
  result.base_hash = parent_content_hash(base, false);
  std::vector<Checkpoint> modules;
  for (const auto& m : r.modules) modules.push_back(Checkpoint::open(m));
  std::vector<const Checkpoint*> ptrs;
  std::vector<std::string> hashes;
  for (const auto& m : modules) ptrs.push_back(&m), hashes.push_back(parent_content_hash(m, false));
  std::vector<ModuleSource> sources = resolve_modules(base, result.base_hash, ptrs, hashes, r.options);
  AtomicDir out(r.out, r.overwrite);
  Provenance prov("merge");
  prov.argv = r.command_line;
  const uint64_t total = base.store().total_bytes();
  result.content_hash = write_merge(base, sources, r.options, out.path(), result.report, [&](uint64_t done) {
    if (progress) progress(done, total);
  });
  prov.output_hash = result.content_hash;
  if (result.report.verified_base_hash != result.base_hash) {
    if (!r.options.force)
      fail(r.base.string(), "content hash", "its provenance says ", result.base_hash, " but its weights hash to ",
           result.report.verified_base_hash,
           ": the base changed after it was made (emo verify shows which tensor); --force merges anyway");
    prov.extra["base_hash_mismatch"] = result.report.verified_base_hash;
  }
  copy_extra_files(base, out.path());
  prov.add_parent("base", base.dir(), result.base_hash);
  record_merge(prov, r, modules, hashes, sources, result);
  prov.finished = now_iso8601();
  prov.write(out.path());
  write_file_atomic(out / kModelCardFile,
                    model_card(cat("Merge of ", modules.size(), " module(s) into ", base.dir().filename().string()),
                               base.config(), prov, "The base model with retrained modules written back by `emo merge`."));
  out.commit();
  result.out = out.target();
  return result;
}

}  // namespace emo
