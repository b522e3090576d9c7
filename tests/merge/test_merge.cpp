// emo merge: byte-exact round trips, the average formula, composition of disjoint
// modules, what each carry flag carries, and the refusals.
#include <catch2/catch.hpp>

#include <algorithm>

#include "core/checkpoint/content_hash.h"
#include "core/checkpoint/init.h"
#include "core/checkpoint/provenance.h"
#include "core/model/tensor_bridge.h"
#include "merge/diff.h"
#include "merge/merge.h"
#include "surgery/surgery_fixtures.h"

using namespace emo;
using namespace emo::test;

namespace {

std::string bytes(const TensorView& v) { return std::string(reinterpret_cast<const char*>(v.data), v.nbytes); }

// A bf16 micro base written as emo init writes it.
std::string make_base(const fs::path& dir, uint64_t seed = 3, const ModelConfig& c = tiny_config()) {
  fs::create_directories(dir);
  InitOptions o;
  o.seed = seed;
  o.dtype = DType::BF16;
  return write_initialised_model(dir, c, o);
}

std::string extract_to(const fs::path& base, const std::string& base_hash, const ExpertSelection& sel, const fs::path& out) {
  Checkpoint parent = Checkpoint::open(base);
  fs::create_directories(out);
  return write_extract(parent, plan_extract(parent, sel, base_hash), out);
}

// A "retrained" module: its weights with `edit` applied, same config (lineage included), bf16.
std::string retrain(const fs::path& module, const fs::path& out, const std::function<void(ModelWeights&, const ModelConfig&)>& edit) {
  Checkpoint ck = Checkpoint::open(module);
  ModelWeights w = load_weights(ck, {});
  {
    torch::NoGradGuard ng;
    edit(w, ck.config());
  }
  fs::create_directories(out);
  return save_weights(w, ck.config(), out, {}, [](const CanonicalTensor&) { return DType::BF16; });
}

void add_noise(torch::Tensor t, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  t.add_(0.05 * at::randn(t.sizes(), gen));
}

// run_merge, as `emo merge` calls it; the merged content hash.
std::string merge(const fs::path& base, const std::vector<fs::path>& modules, const MergeOptions& o, const fs::path& out,
                  MergeReport* report_out = nullptr) {
  MergeResult r = run_merge({base, out, modules, o, false, {}});
  CHECK(r.report.verified_base_hash == r.base_hash);
  CHECK(r.base_hash == content_hash(Checkpoint::open(base)));
  if (report_out) *report_out = r.report;
  return r.content_hash;
}

ExpertSelection sel_a() {
  ExpertSelection s;
  s.kept = {{0, {0, 3, 5}}, {1, {1, 2, 6}}};
  return s;
}
ExpertSelection sel_b() {  // disjoint from sel_a
  ExpertSelection s;
  s.kept = {{0, {1, 4, 6}}, {1, {0, 3, 5}}};
  return s;
}

}  // namespace

TEST_CASE("merging an unchanged module gives the base back, byte for byte, and says so", "[merge]") {
  TempDir tmp;
  std::string h = make_base(tmp / "base");
  extract_to(tmp / "base", h, sel_a(), tmp / "m");
  MergeReport r;
  MergeOptions o;
  o.carry = PartSet::every();
  CHECK(merge(tmp / "base", {tmp / "m"}, o, tmp / "out", &r) == h);
  CHECK_FALSE(r.changed());
  CHECK(r.relative_change == 0.0);
  CHECK(diff_checkpoints(Checkpoint::open(tmp / "base"), Checkpoint::open(tmp / "out")).all_identical());
  CHECK(read_text_file(tmp / "base" / "model.safetensors") == read_text_file(tmp / "out" / "model.safetensors"));
}

TEST_CASE("extract -> retrain -> merge -> extract gives the retrained module back, the rest stays the base", "[merge]") {
  TempDir tmp;
  std::string h = make_base(tmp / "base");
  extract_to(tmp / "base", h, sel_a(), tmp / "m");
  std::string retrained = retrain(tmp / "m", tmp / "m2", [](ModelWeights& w, const ModelConfig&) {
    for (auto& L : w.layers) add_noise(L.gate_up, 1), add_noise(L.down, 2);
  });
  MergeReport r;
  std::string merged = merge(tmp / "base", {tmp / "m2"}, {}, tmp / "merged", &r);
  CHECK(r.changed());
  CHECK(r.relative_change > 0);
  // Each layer got its 3 routed experts back (the shared one is not carried by default).
  CHECK(r.layers["0"]["experts_carried"] == 3);
  // Extracting the same experts from the merged model gives the retrained module.
  std::string again = extract_to(tmp / "merged", merged, sel_a(), tmp / "again");
  Checkpoint m2 = Checkpoint::open(tmp / "m2"), ag = Checkpoint::open(tmp / "again");
  Checkpoint base = Checkpoint::open(tmp / "base"), out = Checkpoint::open(tmp / "merged");
  for (const auto& t : m2.tensors()) {
    INFO(t.name);
    bool shared_expert = t.role == Role::Expert && t.expert == 3;
    if (t.role == Role::Expert && !shared_expert) CHECK(bytes(m2.view(t)) == bytes(ag.view(t.name)));
  }
  // Everything the merge did not touch is the base's, byte for byte.
  std::set<std::string> touched;
  for (const auto& [l, ids] : sel_a().kept)
    for (int64_t e : ids)
      for (Proj p : {Proj::Gate, Proj::Up, Proj::Down}) touched.insert(expert_tensor_name(family_named("emo"), l, int(e), p));
  for (const auto& t : base.tensors()) {
    INFO(t.name);
    if (touched.count(t.name)) CHECK(bytes(base.view(t)) != bytes(out.view(t.name)));
    else CHECK(bytes(base.view(t)) == bytes(out.view(t.name)));
  }
}

TEST_CASE("average mode is (1 - alpha) * base + alpha * module in float32, rounded once", "[merge]") {
  TempDir tmp;
  std::string h = make_base(tmp / "base");
  extract_to(tmp / "base", h, sel_a(), tmp / "m");
  retrain(tmp / "m", tmp / "m2", [](ModelWeights& w, const ModelConfig&) {
    for (auto& L : w.layers) add_noise(L.gate_up, 3), add_noise(L.down, 4);
  });
  MergeOptions o;
  o.mode = "average";
  o.alpha = 0.3;
  merge(tmp / "base", {tmp / "m2"}, o, tmp / "avg");
  Checkpoint base = Checkpoint::open(tmp / "base"), mod = Checkpoint::open(tmp / "m2"), out = Checkpoint::open(tmp / "avg");
  for (auto [l, me, be] : {std::tuple{0, 1, 3}, std::tuple{1, 2, 6}}) {
    for (Proj p : {Proj::Gate, Proj::Down}) {
      auto b = tensor_from_view(base.view(expert_tensor_name(family_named("emo"), l, be, p))).to(torch::kFloat32);
      auto m = tensor_from_view(mod.view(expert_tensor_name(family_named("emo"), l, me, p))).to(torch::kFloat32);
      auto expected = ((1 - 0.3) * b + 0.3 * m).to(torch::kBFloat16);
      auto got = tensor_from_view(out.view(expert_tensor_name(family_named("emo"), l, be, p)));
      CHECK(torch::equal(got, expected));
    }
  }
}

TEST_CASE("two disjoint modules compose, in either order", "[merge]") {
  TempDir tmp;
  std::string h = make_base(tmp / "base");
  extract_to(tmp / "base", h, sel_a(), tmp / "a");
  extract_to(tmp / "base", h, sel_b(), tmp / "b");
  retrain(tmp / "a", tmp / "a2", [](ModelWeights& w, const ModelConfig&) { add_noise(w.layers[0].gate_up, 5); });
  retrain(tmp / "b", tmp / "b2", [](ModelWeights& w, const ModelConfig&) { add_noise(w.layers[1].down, 6); });
  std::string ab = merge(tmp / "base", {tmp / "a2", tmp / "b2"}, {}, tmp / "ab");
  std::string ba = merge(tmp / "base", {tmp / "b2", tmp / "a2"}, {}, tmp / "ba");
  CHECK(ab == ba);
  CHECK(read_text_file(tmp / "ab" / "model.safetensors") == read_text_file(tmp / "ba" / "model.safetensors"));
  CHECK(ab != h);
}

TEST_CASE("carry flags carry router rows, shared experts and non-MoE tensors only when asked", "[merge]") {
  TempDir tmp;
  std::string h = make_base(tmp / "base");
  extract_to(tmp / "base", h, sel_a(), tmp / "m");
  retrain(tmp / "m", tmp / "m2", [](ModelWeights& w, const ModelConfig&) {
    for (auto& L : w.layers) add_noise(L.router, 7), add_noise(L.gate_up, 8), add_noise(L.q, 9);
    add_noise(w.embed, 10);
  });
  Checkpoint base = Checkpoint::open(tmp / "base");
  auto same = [&](const fs::path& out, const std::string& name) { return bytes(base.view(name)) == bytes(Checkpoint::open(out).view(name)); };
  const std::string router0 = "model.layers.0.mlp.gate.weight", shared0 = "model.layers.0.mlp.experts.7.gate_proj.weight",
                    q0 = "model.layers.0.self_attn.q_proj.weight", emb = "model.embed_tokens.weight";
  merge(tmp / "base", {tmp / "m2"}, {}, tmp / "plain");
  CHECK(same(tmp / "plain", router0));
  CHECK(same(tmp / "plain", shared0));
  CHECK(same(tmp / "plain", q0));
  CHECK_FALSE(same(tmp / "plain", "model.layers.0.mlp.experts.3.gate_proj.weight"));
  // emo diff names the parts that changed.
  CHECK(diff_checkpoints(base, Checkpoint::open(tmp / "plain")).changed_parts() == PartSet{Part::RoutedExperts});
  MergeOptions all;
  all.carry = PartSet::every();
  merge(tmp / "base", {tmp / "m2"}, all, tmp / "all");
  CHECK_FALSE(same(tmp / "all", router0));
  CHECK_FALSE(same(tmp / "all", shared0));
  CHECK_FALSE(same(tmp / "all", q0));
  CHECK_FALSE(same(tmp / "all", emb));
  DiffReport d = diff_checkpoints(base, Checkpoint::open(tmp / "all"));
  CHECK(d.changed_parts().str() == "routed_experts, shared_experts, router, attention, embeddings");
  CHECK(d.parts.at(Part::Norms).changed == 0);
  CHECK(d.parts.at(Part::Router).changed == 2);
  CHECK(d.to_json(false)["parts"]["router"]["tensors"] == 2);
  // Router rows of experts the module does not hold stay the base's.
  Checkpoint out = Checkpoint::open(tmp / "all");
  CHECK(bytes(base.view(router0).slice0(1)) == bytes(out.view(router0).slice0(1)));
  CHECK(bytes(base.view(router0).slice0(3)) != bytes(out.view(router0).slice0(3)));
}

TEST_CASE("a module of a module merges into the root through its root map", "[merge]") {
  TempDir tmp;
  std::string h = make_base(tmp / "base");
  std::string h1 = extract_to(tmp / "base", h, sel_a(), tmp / "m1");
  ExpertSelection second;
  second.kept = {{0, {1, 2}}, {1, {0, 1}}};  // full experts 3, 5 and 1, 2
  extract_to(tmp / "m1", h1, second, tmp / "m2");
  retrain(tmp / "m2", tmp / "m3", [](ModelWeights& w, const ModelConfig&) { add_noise(w.layers[0].down, 11); });
  merge(tmp / "base", {tmp / "m3"}, {}, tmp / "out");
  Checkpoint out = Checkpoint::open(tmp / "out"), m3 = Checkpoint::open(tmp / "m3");
  CHECK(bytes(out.view("model.layers.0.mlp.experts.5.down_proj.weight")) == bytes(m3.view("model.layers.0.mlp.experts.1.down_proj.weight")));
}

TEST_CASE("merge refusals: another base, other shapes, overlaps", "[merge][bad-input]") {
  TempDir tmp;
  std::string h = make_base(tmp / "base");
  std::string other = make_base(tmp / "other", 99);
  extract_to(tmp / "other", other, sel_a(), tmp / "foreign");
  CHECK_THROWS_WITH(merge(tmp / "base", {tmp / "foreign"}, {}, tmp / "x1"), Catch::Contains("not from this base"));
  MergeOptions force;
  force.force = true;
  CHECK_NOTHROW(merge(tmp / "base", {tmp / "foreign"}, force, tmp / "x2"));
  extract_to(tmp / "base", h, sel_a(), tmp / "a");
  ExpertSelection overlapping;
  overlapping.kept = {{0, {0, 1, 2}}, {1, {0, 3, 4}}};
  extract_to(tmp / "base", h, overlapping, tmp / "o");
  CHECK_THROWS_WITH(merge(tmp / "base", {tmp / "a", tmp / "o"}, {}, tmp / "x3"), Catch::Contains("also carried by"));
  MergeOptions first;
  first.overlap = Overlap::First;
  CHECK_NOTHROW(merge(tmp / "base", {tmp / "a", tmp / "o"}, first, tmp / "x4"));
  // A module whose config lost its lineage.
  fs::create_directories(tmp / "plain");
  save_checkpoint(tiny_config(), random_weights(tiny_config(), 1), tmp / "plain");
  CHECK_THROWS_WITH(merge(tmp / "base", {tmp / "plain"}, {}, tmp / "x5"), Catch::Contains("not a module made by emo extract"));
}

TEST_CASE("a Qwen2-MoE shared expert carried by two modules follows --overlap, not --non-moe-rule", "[merge][families]") {
  ModelConfig c = ModelConfig::from_json(Json::parse(R"({"model_type": "qwen2_moe", "vocab_size": 64, "hidden_size": 32,
    "intermediate_size": 24, "moe_intermediate_size": 16, "shared_expert_intermediate_size": 20, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_experts": 8, "num_experts_per_tok": 2})"), "test");
  TempDir tmp;
  std::string h = make_base(tmp / "base", 3, c);
  extract_to(tmp / "base", h, sel_a(), tmp / "a");
  extract_to(tmp / "base", h, sel_b(), tmp / "b");
  retrain(tmp / "a", tmp / "a2", [](ModelWeights& w, const ModelConfig&) { add_noise(w.layers[0].shared_up, 1); });
  retrain(tmp / "b", tmp / "b2", [](ModelWeights& w, const ModelConfig&) { add_noise(w.layers[0].shared_up, 2); });
  const std::string shared_up = "model.layers.0.mlp.shared_expert.up_proj.weight";
  MergeOptions o;
  o.carry = {Part::RoutedExperts, Part::SharedExperts};
  CHECK_THROWS_WITH(merge(tmp / "base", {tmp / "a2", tmp / "b2"}, o, tmp / "refused"),
                    Catch::Contains("mlp.shared_expert.") && Catch::Contains("--overlap"));
  o.overlap = Overlap::First;  // the non-MoE rule stays "average": a shared expert is not non-MoE
  merge(tmp / "base", {tmp / "a2", tmp / "b2"}, o, tmp / "first");
  CHECK(bytes(Checkpoint::open(tmp / "first").view(shared_up)) == bytes(Checkpoint::open(tmp / "a2").view(shared_up)));
  CHECK(bytes(Checkpoint::open(tmp / "first").view(shared_up)) != bytes(Checkpoint::open(tmp / "b2").view(shared_up)));
}

TEST_CASE("run_merge writes provenance naming the carried parts and rules, and leaves nothing when it refuses",
          "[merge][bad-input]") {
  TempDir tmp;
  std::string h = make_base(tmp / "base");
  extract_to(tmp / "base", h, sel_a(), tmp / "a");
  MergeOptions o;
  o.carry = {Part::RoutedExperts, Part::Router};
  MergeResult r = run_merge({tmp / "base", tmp / "out", {tmp / "a"}, o, false, {"emo", "merge", "--router-rows"}});
  CHECK(r.out == tmp / "out");
  auto prov = Provenance::load(tmp / "out");
  REQUIRE(prov);
  CHECK(prov->settings["carry"].size() == 2);
  CHECK(prov->settings["carry"][0].as<std::string>() == "routed_experts");
  CHECK(prov->settings["carry"][1].as<std::string>() == "router");
  CHECK(prov->settings["overlap"].as<std::string>() == "error");
  CHECK(prov->output_hash == r.content_hash);
  CHECK(fs::exists(tmp / "out" / "README.md"));
  // OUT exists: refused before writing, the old output untouched.
  CHECK_THROWS(run_merge({tmp / "base", tmp / "out", {tmp / "a"}, o, false, {}}));
  CHECK(Provenance::load(tmp / "out")->output_hash == r.content_hash);
  ExpertSelection overlapping;
  overlapping.kept = {{0, {0, 1, 2}}, {1, {0, 3, 4}}};
  extract_to(tmp / "base", h, overlapping, tmp / "o");
  CHECK_THROWS_WITH(run_merge({tmp / "base", tmp / "x", {tmp / "a", tmp / "o"}, o, false, {}}), Catch::Contains("also carried by"));
  CHECK_FALSE(fs::exists(tmp / "x"));
}

TEST_CASE("a merge request from its fields: flags in any order give one request, bad values name their flag",
          "[merge][bad-input]") {
  const auto& spec = merge_request_spec();
  FieldValues given = {{"router-rows", {}}, {"no-routed", {}}, {"base", {"b"}}, {"module", {"m1", "m2"}},
                       {"overlap", {"first"}}, {"mode", {"average"}}, {"alpha", {"0.25"}}, {"out", {"o"}}};
  MergeRequest r = build_request(spec, given);
  CHECK(r.base == "b");
  CHECK(r.modules == std::vector<fs::path>{"m1", "m2"});
  CHECK(r.out == "o");
  CHECK(r.options.carry == PartSet{Part::Router});  // no-routed applies first, whatever the order given
  CHECK(r.options.overlap == Overlap::First);
  CHECK(r.options.non_moe_rule == Overlap::Average);  // untouched default
  CHECK(r.options.mode == "average");
  CHECK(r.options.alpha == 0.25);
  CHECK_FALSE(r.overwrite);
  std::reverse(given.begin(), given.end());
  CHECK(build_request(spec, given).options.carry == PartSet{Part::Router});
  CHECK(build_request(spec, {{"non-moe", {}}}).options.carry == PartSet{Part::RoutedExperts}.add(PartSet::non_moe()));

  CHECK_THROWS_WITH(build_request(spec, {{"alpha", {"half"}}}), Catch::Contains("--alpha") && Catch::Contains("half"));
  CHECK_THROWS_WITH(build_request(spec, {{"overlap", {"sum"}}}), Catch::Contains("--overlap"));
  CHECK_THROWS_WITH(build_request(spec, {{"carry", {"all"}}}), Catch::Contains("--carry"));
  // What the caller owns is a flag of the command, not a recipe setting.
  for (const auto& f : spec.fields)
    CHECK(f.spec.recipe_setting == (f.spec.key != "out" && f.spec.key != "overwrite" && f.spec.key != "force"));
}
