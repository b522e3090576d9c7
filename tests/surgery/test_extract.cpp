// emo extract: for every selection method and budget, the extracted module computes
// exactly what the full model computes with routing restricted to the same experts.
#include <catch2/catch.hpp>

#include <algorithm>
#include <fstream>
#include <tuple>

#include "core/checkpoint/content_hash.h"
#include "core/checkpoint/init.h"
#include "core/text/tokenizer.h"
#include "core/util/error.h"
#include "surgery/extract_request.h"
#include "surgery/module.h"
#include "surgery/request_fields.h"
#include "surgery/route_stats_file.h"
#include "surgery/surgery_fixtures.h"
#include "test_util.h"

using namespace emo;
using namespace emo::test;

namespace {

struct Case {
  const char* name;
  const char* patch;
};

const Case kModels[] = {
    {"emo, one shared expert", "{}"},
    {"emo, no shared expert", R"({"num_shared_experts":0})"},
    {"emo, per-layer experts and a dense layer",
     R"({"num_hidden_layers":3,"num_experts_per_layer":[8,0,8],"dense_intermediate_size":24})"},
    {"emo, always-active expert", R"({"num_shared_experts":0,"always_active_experts":[3]})"},
    {"olmoe", R"({"model_type":"olmoe","num_shared_experts":0,"num_key_value_heads":4})"},
};

ModelConfig case_config(const Case& c) {
  Json j = parse_json(c.patch, c.name);
  if (j.value("model_type", "") == "olmoe") {
    Json base = parse_json(find_preset("micro").config_json, "micro");
    base.erase("num_shared_experts");
    base["vocab_size"] = 64, base["pad_token_id"] = 0, base["eos_token_id"] = 1;
    j.erase("num_shared_experts");
    for (auto it = j.begin(); it != j.end(); ++it) base[it.key()] = it.value();
    return ModelConfig::from_json(base, c.name);
  }
  return tiny_config(c.patch);
}

BudgetRequest budget_keep(int64_t k) {
  BudgetRequest b;
  b.keep = k;
  return b;
}

// Extracts `sel` from `full` into `out` and checks the module against the restricted model.
void check_module(const fs::path& full, const std::string& full_hash, const ExpertSelection& sel, const fs::path& out,
                  const torch::Tensor& ids) {
  Checkpoint parent = Checkpoint::open(full);
  ExtractPlan plan = plan_extract(parent, sel, full_hash);
  fs::create_directories(out);
  std::string hash = write_extract(parent, plan, out);
  CHECK(hash == content_hash(Checkpoint::open(out)));
  auto module = logits_of(out, ids), restricted = restricted_logits(full, sel, ids);
  CHECK(max_abs_diff(module, restricted) <= 1e-5);
}

// Every selection method at every budget: the budget holds (keep counts the shared
// expert) and the extracted module equals the restricted full model.
void check_every_method(const fs::path& full, const std::string& hash, const ModelConfig& c, SelectionSources src,
                        const std::vector<BudgetRequest>& budgets, const fs::path& tmp, const torch::Tensor& ids) {
  int n = 0;
  for (const auto& method : selection_methods()) {
    // A method without a budget (explicit) runs once, with none.
    for (const auto& budget : method->uses_budget() ? budgets : std::vector<BudgetRequest>{{}}) {
      INFO(method->name() << " budget " << budget.to_json().dump());
      ModuleChoice choice = choose_module(c, {method->name(), budget, false, 5}, src);
      for (const auto& [l, kept] : choice.selection.kept) CHECK(int64_t(kept.size()) + 1 == choice.budget.keep[size_t(l)]);
      check_module(full, hash, choice.selection, tmp / ("m" + std::to_string(n++)), ids);
    }
  }
}

}  // namespace

TEST_CASE("modules equal the restricted full model: every method, several budgets", "[surgery][extract]") {
  ModelConfig c = tiny_config();
  TempDir tmp;
  std::string hash = write_random_checkpoint(c, tmp / "full", 31);
  Model model = Model::load(Checkpoint::open(tmp / "full"));
  TokenizedExamples ex = random_examples(c.vocab_size, 3, 12, 2);
  RouteStats stats = collect_route_stats(model, ex, {});
  auto ids = random_examples(c.vocab_size, 1, 10, 3).ids[0];
  auto batch = torch::tensor(ids, torch::kInt64).unsqueeze(0);
  ExpertSelection listed;
  listed.kept = {{0, {0, 2, 6}}, {1, {1, 3, 4}}};
  std::vector<BudgetRequest> budgets = {budget_keep(2), budget_keep(4), budget_keep(7)};
  BudgetRequest fraction;
  fraction.keep_fraction = 0.5;
  BudgetRequest per_layer;
  per_layer.keep_per_layer = {5, 3};
  budgets.push_back(fraction);
  budgets.push_back(per_layer);
  SelectionSources src;
  src.stats = &stats;
  src.model = &model;
  src.examples = &ex;
  src.listed = &listed;
  check_every_method(tmp / "full", hash, c, src, budgets, tmp.path(), batch);
}

TEST_CASE("max-bytes plans what extract writes: the weight files fit, and the plan is exact but for headers",
          "[surgery][extract]") {
  for (const Case& k : kModels) {
    INFO(k.name);
    ModelConfig c = case_config(k);
    TempDir tmp;
    std::string hash = write_random_checkpoint(c, tmp / "full", 41);
    Checkpoint parent = Checkpoint::open(tmp / "full");
    const ModuleBytes size = module_bytes(parent);
    // The whole model as a module is the parent itself: every tensor, with its header bound.
    uint64_t all = 0;
    for (const auto& t : canonical_tensors(c)) all += parent.view(parent.tensor(t.name)).nbytes + t.name.size() + kHeaderBytesPerTensor;
    Budget every;
    for (const auto& s : c.layers()) every.keep.push_back(s.num_experts);
    CHECK(size.of(c, every) == all);
    // A module: the plan's bytes are its tensors' bytes and header bounds, names priced at
    // the parent's longest expert names (renumbered names are no longer); on disk it fits.
    BudgetRequest b;
    b.max_bytes = size.of(c, Budget::smallest(c)) + 3 * size.per_expert[0] + 7;
    SelectionSources none;
    none.bytes = &size;
    ModuleChoice m = choose_module(c, {"random", b, false, 3}, none);
    ExtractPlan plan = plan_extract(parent, m.selection, hash);
    uint64_t exact = 0, expert_tensors = 0;
    for (const auto& t : plan.tensors) {
      uint64_t n = dtype_size(t.dtype);
      for (int64_t d : t.tensor.shape) n *= uint64_t(d);
      exact += n + t.tensor.name.size() + kHeaderBytesPerTensor;
      expert_tensors += t.tensor.role == Role::Expert;
    }
    const uint64_t planned = size.of(c, m.budget);
    CHECK(planned <= *b.max_bytes);
    CHECK(planned >= exact);
    CHECK(planned - exact <= 2 * expert_tensors);  // at most two digits shorter per renumbered expert
    fs::create_directories(tmp / "module");
    write_extract(parent, plan, tmp / "module");
    CHECK(weight_file_bytes(tmp / "module") <= planned);
  }
}

TEST_CASE("modules equal the restricted model for every architecture option", "[surgery][extract]") {
  for (const auto& mc : kModels) {
    INFO(mc.name);
    ModelConfig c = case_config(mc);
    TempDir tmp;
    std::string hash = write_random_checkpoint(c, tmp / "full", 41);
    Model model = Model::load(Checkpoint::open(tmp / "full"));
    TokenizedExamples ex = random_examples(c.vocab_size, 2, 10, 4);
    RouteStats stats = collect_route_stats(model, ex, {});
    auto batch = torch::tensor(random_examples(c.vocab_size, 1, 9, 5).ids[0], torch::kInt64).unsqueeze(0);
    for (int64_t keep : {2, 5}) {
      INFO("keep " << keep);
      SelectionSources src;
      src.stats = &stats;
      ModuleChoice choice = choose_module(c, {"router-prob", budget_keep(keep), false, 0}, src);
      check_module(tmp / "full", hash, choice.selection, tmp / ("k" + std::to_string(keep)), batch);
      ModuleChoice excluded = choose_module(c, {"router-prob", budget_keep(keep), true, 0}, src);
      check_module(tmp / "full", hash, excluded.selection, tmp / ("x" + std::to_string(keep)), batch);
    }
  }
}

TEST_CASE("the module config is what HF loaders need, with its lineage", "[surgery][extract]") {
  ModelConfig c = tiny_config(R"({"architectures":["EmoForCausalLM"],"something_else":7})");
  TempDir tmp;
  std::string hash = write_random_checkpoint(c, tmp / "full", 1);
  ExpertSelection sel;
  sel.kept = {{0, {1, 5}}, {1, {0, 6}}};
  Checkpoint parent = Checkpoint::open(tmp / "full");
  ExtractPlan plan = plan_extract(parent, sel, hash);
  fs::create_directories(tmp / "m");
  write_extract(parent, plan, tmp / "m");
  Json cfg = load_json_file((tmp / "m" / "config.json").string());
  CHECK(cfg["num_experts"] == 3);           // 2 routed + the shared expert
  CHECK(cfg["num_shared_experts"] == 1);
  CHECK(cfg["num_experts_per_tok"] == 3);   // min(top_k 3, 3)
  CHECK(cfg["something_else"] == 7);        // unknown keys travel
  CHECK(cfg["emo_module"]["parent_hash"] == hash);
  CHECK(cfg["emo_module"]["experts"]["0"] == Json::parse("[1, 5, 7]"));  // shared expert 7 last
  CHECK(cfg["emo_module"]["root_experts"]["1"] == Json::parse("[0, 6, 7]"));
  Checkpoint m = Checkpoint::open(tmp / "m");
  // The router keeps rows 1, 5, 7 of the parent's, in that order; expert 1 is parent expert 5.
  auto rows = [](const TensorView& v) { return std::string(reinterpret_cast<const char*>(v.data), v.nbytes); };
  CHECK(rows(m.view("model.layers.0.mlp.gate.weight").slice0(1)) == rows(parent.view("model.layers.0.mlp.gate.weight").slice0(5)));
  CHECK(rows(m.view("model.layers.0.mlp.experts.1.down_proj.weight")) == rows(parent.view("model.layers.0.mlp.experts.5.down_proj.weight")));
  CHECK(rows(m.view("model.layers.1.mlp.experts.2.up_proj.weight")) == rows(parent.view("model.layers.1.mlp.experts.7.up_proj.weight")));
  CHECK(rows(m.view("model.embed_tokens.weight")) == rows(parent.view("model.embed_tokens.weight")));
}

TEST_CASE("a module of a module keeps the full lineage", "[surgery][extract]") {
  ModelConfig c = tiny_config();
  TempDir tmp;
  std::string root = write_random_checkpoint(c, tmp / "full", 2);
  ExpertSelection first;
  first.kept = {{0, {0, 2, 3, 6}}, {1, {1, 2, 4, 5}}};
  Checkpoint full = Checkpoint::open(tmp / "full");
  fs::create_directories(tmp / "m1");
  write_extract(full, plan_extract(full, first, root), tmp / "m1");
  Checkpoint m1 = Checkpoint::open(tmp / "m1");
  std::string h1 = content_hash(m1);
  ExpertSelection second;  // module numbering: layer 0 experts 1, 3 = full experts 2, 6
  second.kept = {{0, {1, 3}}, {1, {0, 3}}};
  fs::create_directories(tmp / "m2");
  write_extract(m1, plan_extract(m1, second, h1), tmp / "m2");
  auto info = ModuleInfo::of(Checkpoint::open(tmp / "m2").config());
  REQUIRE(info);
  CHECK(info->parent_hash == h1);
  CHECK(info->root_hash == root);
  CHECK(info->root_experts.at(0) == std::vector<int64_t>{2, 6, 7});
  CHECK(info->root_experts.at(1) == std::vector<int64_t>{1, 5, 7});
  // And it computes what the full model restricted to the root experts computes.
  ExpertSelection as_root;
  as_root.kept = {{0, {2, 6}}, {1, {1, 5}}};
  auto ids = torch::tensor(random_examples(c.vocab_size, 1, 8, 9).ids[0], torch::kInt64).unsqueeze(0);
  CHECK(max_abs_diff(logits_of(tmp / "m2", ids), restricted_logits(tmp / "full", as_root, ids)) <= 1e-5);
}

TEST_CASE("bad selections and budgets are clear errors", "[surgery][bad-input]") {
  ModelConfig c = tiny_config();
  SelectionSources none;
  auto choose = [&](BudgetRequest b) { return choose_module(c, {"random", b, false, 0}, none); };
  CHECK_THROWS_WITH(choose(budget_keep(9)), Catch::Contains("larger than the layer's 8 experts"));
  CHECK_THROWS_WITH(choose(budget_keep(0)), Catch::Contains("at least 1 expert"));
  CHECK_THROWS_WITH(choose(budget_keep(1)), Catch::Contains("leaves no routed expert"));
  BudgetRequest per_layer;
  per_layer.keep_per_layer = {5, 2};
  CHECK_THROWS_WITH(choose(per_layer), Catch::Contains("each keep at least top_k = 3"));
  BudgetRequest two;
  two.keep = 3, two.keep_fraction = 0.5;
  CHECK_THROWS_WITH(choose(two), Catch::Contains("exactly one of"));
  CHECK_THROWS_WITH(choose_module(c, {"router-prob", budget_keep(3), false, 0}, none), Catch::Contains("needs routing statistics"));
  CHECK_THROWS_WITH(find_selection_method("best"), Catch::Contains("unknown selection method"));
  ExpertSelection sel;
  sel.kept = {{0, {1, 9}}};
  CHECK_THROWS_WITH(sel.validate(c, "e.json"), Catch::Contains("e.json: 0: expert id 9 out of range"));
  sel.kept = {{0, {7}}};
  CHECK_THROWS_WITH(sel.validate(c, "e.json"), Catch::Contains("shared expert"));
  sel.kept = {{2, {1}}};
  CHECK_THROWS_WITH(sel.validate(c, "e.json"), Catch::Contains("layer 2 out of range"));
  CHECK_THROWS_WITH(ExpertSelection::from_json(Json::parse(R"({"0":[1,1]})"), "e.json"), Catch::Contains("listed twice"));
}

TEST_CASE("statistics of another model, or of another shape, are refused", "[surgery][bad-input]") {
  ModelConfig c = tiny_config();
  Model model(c, random_weights(c, 3));
  RouteStats s = collect_route_stats(model, random_examples(c.vocab_size, 2, 6, 1), {});
  s.model_hash = "sha256:aaaa";
  CHECK_NOTHROW(check_stats_model(s, "sha256:aaaa", c, "s.safetensors"));
  CHECK_THROWS_WITH(check_stats_model(s, "sha256:bbbb", c, "s.safetensors"), Catch::Contains("s.safetensors: model_hash"));
  // A file may name the right model and still not fit it: its shapes are checked too.
  RouteStats fewer = s;
  fewer.layers.pop_back();
  CHECK_THROWS_WITH(check_stats_model(fewer, "sha256:aaaa", c, "s.safetensors"), Catch::Contains("s.safetensors: num_layers"));
  RouteStats narrow = s;
  narrow.layers[1].prob_sum = narrow.layers[1].prob_sum.narrow(0, 0, 2);
  CHECK_THROWS_WITH(check_stats_model(narrow, "sha256:aaaa", c, "s.safetensors"),
                    Catch::Contains("s.safetensors: layers.1.prob_sum: 2 experts"));
}

TEST_CASE("a statistics file with a header of the wrong types is refused, naming the field", "[surgery][bad-input]") {
  TempDir tmp;
  for (auto [key, value, message] : std::vector<std::tuple<std::string, Json, std::string>>{
           {"tokens", "many", "emo_route_stats: tokens: expected an integer"},
           {"tokens", -5, "emo_route_stats: tokens: -5 is outside"},
           {"num_layers", 0, "emo_route_stats: num_layers: 0 is outside"},
           {"moe_layers", Json::array({7}), "emo_route_stats.moe_layers[0]: 7 is not a layer index"},
           {"moe_layers", Json::array({0}), "layers.0.prob_sum"},  // promised, absent
           {"settings", Json::array(), "emo_route_stats.settings: expected an object"}}) {
    Json h = route_stats_header(10, 1, 2, Json::array(), "sha256:a", "sha256:b", "sha256:c", Json::object());
    h[key] = value;
    fs::path file = tmp / "typed.safetensors";
    {
      SafetensorsWriter w(file, {}, {{kRouteStatsHeaderKey, h.dump()}});
      w.finish();
    }
    INFO(key << " = " << value.dump());
    CHECK_THROWS_WITH(RouteStats::load(file.string()), Catch::Contains(message));
  }
}

TEST_CASE("statistics survive a save and load", "[surgery]") {
  ModelConfig c = tiny_config();
  Model model(c, random_weights(c, 3));
  RouteStats s = collect_route_stats(model, random_examples(c.vocab_size, 2, 6, 1), {});
  s.model_hash = "sha256:x";
  TempDir tmp;
  s.save((tmp / "s.safetensors").string());
  RouteStats r = RouteStats::load((tmp / "s.safetensors").string());
  CHECK(r.tokens == s.tokens);
  CHECK(r.tokens == 11);
  CHECK(r.model_hash == "sha256:x");
  for (size_t l = 0; l < s.layers.size(); ++l) {
    CHECK(torch::equal(r.layers[l].prob_sum, s.layers[l].prob_sum));
    CHECK(torch::equal(r.layers[l].select_count, s.layers[l].select_count));
    CHECK(torch::equal(r.layers[l].easy_ep, s.layers[l].easy_ep));
    // Every token chooses top_k = 3 experts, so the counts add up to 3 per token.
    CHECK(s.layers[l].select_count.sum().item<int64_t>() == 3 * s.tokens);
    // Routed and shared probabilities each sum to one per token.
    CHECK(s.layers[l].prob_sum.sum().item<double>() == Approx(2.0 * double(s.tokens)));
  }
  std::ofstream(tmp / "bad.safetensors") << "not a stats file";
  CHECK_THROWS(RouteStats::load((tmp / "bad.safetensors").string()));
}

TEST_CASE("modules of the shipped pretrained EMO model equal the restricted model: every method, several budgets",
          "[surgery][extract][pretrained]") {
  // data/models/emo-tiny: trained by recipes/modularity.yaml (bf16). Routing here is far
  // from uniform, unlike a random model's, so near-ties between experts are rare and the
  // methods pick genuinely different modules.
  fs::path full = data_dir() / "models/emo-tiny";
  Checkpoint parent = Checkpoint::open(full);
  const ModelConfig& c = parent.config();
  std::string hash = parent_content_hash(parent, true);
  Model model = Model::load(parent);
  Tokenizer tok = Tokenizer::load((full / "tokenizer.json").string());
  Examples one;
  one.texts = {"Question: A baker sells 12 muffins a day for 5 days. How many muffins does she sell?\n"
               "Answer: 12 * 5 = <<12*5=60>>60 muffins.\n#### 60"};
  TokenizedExamples ex = tokenize_examples(one, tok, 256);
  RouteStats stats = collect_route_stats(model, ex, {});
  auto ids = tok.encode("def add(a, b):\n    return a + b\n# In the beginning God created the heaven and the earth.");
  auto batch = torch::tensor(std::vector<int64_t>(ids.begin(), ids.end()), torch::kInt64).unsqueeze(0);
  ExpertSelection listed;
  for (int l = 0; l < int(c.layers().size()); ++l) listed.kept[l] = {int64_t(l), int64_t(l + 7), 30};
  BudgetRequest fraction, per_layer;
  fraction.keep_fraction = 0.25;
  per_layer.keep_per_layer = {8, 4, 6, 5};
  std::vector<BudgetRequest> budgets = {budget_keep(2), budget_keep(4), fraction, per_layer};
  TempDir tmp;
  SelectionSources src;
  src.stats = &stats;
  src.model = &model;
  src.examples = &ex;
  src.listed = &listed;
  check_every_method(full, hash, c, src, budgets, tmp.path(), batch);
}

TEST_CASE("an extract request from its fields: example and budget rows are shared, bad values name their flag",
          "[surgery][extract][bad-input]") {
  const auto& spec = extract_request_spec();
  ExtractRequest r = build_request(spec, {{"model", {"m"}}, {"data", {"d.jsonl"}}, {"limit", {"1"}}, {"shots", {"8"}},
                                          {"keep", {"4"}}, {"per-layer", {"auto"}}, {"max-length", {"64"}},
                                          {"force", {}}, {"out", {"o"}}});
  CHECK(r.model == "m");
  CHECK(r.out == "o");
  CHECK(r.overwrite);
  CHECK(r.examples.source.path == "d.jsonl");
  CHECK(r.examples.source.limit == 1);
  CHECK(r.examples.source.shots == 8);
  CHECK(r.examples.max_length == 64);
  CHECK(r.examples.batch == 8);  // the default
  CHECK(r.budget.keep == 4);
  CHECK(r.budget.per_layer_auto);
  CHECK(r.method_name() == "router-prob");
  CHECK(build_request(spec, {{"experts", {"e.json"}}}).method_name() == "explicit");
  CHECK(build_request(spec, {{"max-bytes", {"2MiB"}}}).budget.max_bytes == 2u << 20);

  CHECK_THROWS_WITH(build_request(spec, {{"limit", {"-1"}}}), Catch::Contains("--limit"));
  CHECK_THROWS_WITH(build_request(spec, {{"max-bytes", {"2 apples"}}}), Catch::Contains("--max-bytes"));
  CHECK_THROWS_WITH(build_request(spec, {{"keep-per-layer", {"4,x"}}}), Catch::Contains("--keep-per-layer"));
  // The recipe checks a size before any step runs, as the command does.
  for (const auto& f : spec.fields)
    if (f.spec.key == "max-bytes") {
      CHECK(f.spec.check("8GB").empty());
      CHECK_FALSE(f.spec.check("8 apples").empty());
    }
  std::vector<std::string> caller_owned;
  for (const auto& f : spec.fields)
    if (!f.spec.recipe_setting) caller_owned.push_back(f.spec.key);
  CHECK(caller_owned == std::vector<std::string>{"out", "force"});
}

TEST_CASE("budget kinds: each is a flag of the budget rows, and a request gives exactly one", "[surgery][bad-input]") {
  const ModelConfig c = tiny_config();
  std::vector<std::string> rows;
  for (const auto& f : budget_fields()) rows.push_back(f.spec.key);
  std::string ways;
  for (const auto& k : budget_kinds()) {
    CHECK(std::find(rows.begin(), rows.end(), k.name) != rows.end());
    ways += std::string(ways.empty() ? "" : ", ") + "--" + k.name + " " + k.value;
  }
  CHECK(ways == "--keep K, --keep-fraction F, --keep-per-layer K0,K1,..., --keep-mass P, --max-bytes SIZE");
  CHECK_THROWS_WITH(BudgetRequest{}.resolve(c), Catch::Contains("give exactly one of " + ways));
  // Set through the field rows, as a flag or a recipe setting would: one kind, one budget.
  BudgetRequest fraction;
  apply_fields(budget_fields(), {{"keep-fraction", {"0.5"}}}, fraction);
  CHECK(fraction.given());
  CHECK(fraction.resolve(c).keep == std::vector<int64_t>{4, 4});
  BudgetRequest both = fraction;
  apply_fields(budget_fields(), {{"keep", {"3"}}}, both);
  CHECK_THROWS_WITH(both.resolve(c), Catch::Contains("give exactly one of"));
}
