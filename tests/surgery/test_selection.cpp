// Selection methods on models built so the right answer is known.
#include <catch2/catch.hpp>

#include "surgery/surgery_fixtures.h"

using namespace emo;
using namespace emo::test;

namespace {

// A model where restricting layer 0 changes what layer 1 prefers.
//  - Every token's hidden state is dominated by one constant direction e0 (the
//    embedding's first coordinate), attention contributes nothing (o_proj = 0).
//  - Layer 0's router prefers expert 0 (p ~ 0.38) over expert 1 (p ~ 0.21); expert 0
//    writes along e1, expert 1 along e2. Unrestricted, both run (top-2) and the state
//    gets ~4.4 e1 + 2.5 e2; restricted to expert 0 alone (keep 1), it gets ~11.8 e1.
//  - Layer 1's router: expert 0 reads e2 (x3), expert 1 reads e1 (x1). Unrestricted,
//    3 x 2.5 > 4.4: expert 0 wins; with layer 0 restricted, only e1 is there: expert 1.
// So router-prob (statistics of the unrestricted model) keeps expert 0 in layer 1, and
// layerwise-greedy (layer 1 measured after restricting layer 0) keeps expert 1.
Model built_model(const ModelConfig& c) {
  torch::NoGradGuard ng;
  ModelWeights w = init_weights(c, 0, {});
  for (auto& p : named_params(w, c))
    if (!p.is_norm()) p.tensor->zero_();
  auto gen = at::detail::createCPUGenerator(1);
  w.embed.copy_(0.01 * at::randn(w.embed.sizes(), gen));
  w.embed.select(1, 0).fill_(10.0);
  w.lm_head.copy_(0.1 * at::randn(w.lm_head.sizes(), gen));
  for (auto& L : w.layers) L.q.copy_(0.1 * at::randn(L.q.sizes(), gen)), L.k.copy_(0.1 * at::randn(L.k.sizes(), gen));
  const int64_t I = c.intermediate_size;
  auto& l0 = w.layers[0];
  l0.router[0][0] = 0.3;
  l0.router[1][0] = 0.2;
  for (int e : {0, 1}) {
    l0.gate_up[e].select(1, 0).fill_(0.5);  // gate and up rows read e0
    l0.down[e][1 + e].fill_(0.1);            // expert 0 writes e1, expert 1 writes e2
  }
  (void)I;
  auto& l1 = w.layers[1];
  l1.router[0][2] = 3.0;
  l1.router[1][1] = 1.0;
  return Model(c, std::move(w));
}

}  // namespace

TEST_CASE("layerwise-greedy differs from router-prob where layer 0's restriction moves layer 1", "[surgery][selection]") {
  ModelConfig c = tiny_config(R"({"num_shared_experts":0,"num_experts_per_tok":2})");
  Model model = built_model(c);
  TokenizedExamples ex = random_examples(c.vocab_size, 2, 8, 1);
  RouteStats stats = collect_route_stats(model, ex, {});
  // Layer 0 is the same for both: expert 0 has the highest mean probability.
  auto p0 = stats.mean_prob(0);
  CHECK(p0[0].item<double>() > p0[1].item<double>());
  CHECK(p0[1].item<double>() > p0[2].item<double>());
  BudgetRequest keep1;
  keep1.keep = 1;
  SelectionSources src;
  src.stats = &stats;
  src.model = &model;
  src.examples = &ex;
  ModuleChoice by_prob = choose_module(c, {"router-prob", keep1, false, 0}, src);
  ModuleChoice greedy = choose_module(c, {"layerwise-greedy", keep1, false, 0}, src);
  CHECK(by_prob.selection.kept.at(0) == std::vector<int64_t>{0});
  CHECK(greedy.selection.kept.at(0) == std::vector<int64_t>{0});
  CHECK(by_prob.selection.kept.at(1) == std::vector<int64_t>{0});  // reads e2, written by layer 0's expert 1
  CHECK(greedy.selection.kept.at(1) == std::vector<int64_t>{1});   // after restriction only e1 is there
}

TEST_CASE("score-based methods rank by their own statistic", "[surgery][selection]") {
  ModelConfig c = tiny_config(R"({"num_shared_experts":0,"num_experts_per_tok":2})");
  RouteStats s;
  s.tokens = 10;
  s.layers.resize(2);
  for (auto& l : s.layers) {
    l.moe = true;
    l.prob_sum = torch::tensor({5.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5}, torch::kFloat64);    // router-prob: 0 first
    l.select_count = torch::tensor({1L, 9L, 1L, 1L, 1L, 1L, 3L, 3L}, torch::kInt64);         // frequency: 1 first
    l.easy_ep = torch::tensor({0.0, 0.0, 7.0, 0.0, 0.0, 0.0, 0.0, 0.0}, torch::kFloat64);          // easy-ep: 2 first
    l.reap_sum = torch::tensor({1.0, 9.0, 1.0, 1.0, 1.0, 1.0, 30.0, 3.0}, torch::kFloat64);        // reap mean: 6 (10) first
    l.gate_sum = torch::zeros({8}, torch::kFloat64);
  }
  BudgetRequest keep1;
  keep1.keep = 1;
  SelectionSources src;
  src.stats = &s;
  auto first = [&](const char* m) { return choose_module(c, {m, keep1, false, 0}, src).selection.kept.at(0).at(0); };
  CHECK(first("router-prob") == 0);
  CHECK(first("frequency") == 1);
  CHECK(first("easy-ep") == 2);
  CHECK(first("reap") == 6);  // 30 / 3 = 10 beats 9 / 9 = 1 though expert 1 is chosen more often
  // Random: reproducible from the seed, different across seeds (over enough layers).
  BudgetRequest keep3;
  keep3.keep = 3;
  auto r1 = choose_module(c, {"random", keep3, false, 7}, {}).selection;
  auto r2 = choose_module(c, {"random", keep3, false, 7}, {}).selection;
  auto r3 = choose_module(c, {"random", keep3, false, 8}, {}).selection;
  CHECK(r1.kept == r2.kept);
  CHECK(r1.kept != r3.kept);
  // --exclude keeps the complement.
  auto ex = choose_module(c, {"router-prob", keep1, true, 0}, src).selection;
  CHECK(ex.kept.at(0) == std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7});
}

TEST_CASE("budgets a family's config cannot express are refused saying which work", "[surgery][selection][families]") {
  for (const char* text : {R"({"model_type":"qwen3_moe","vocab_size":64,"hidden_size":32,"moe_intermediate_size":16,
                             "num_hidden_layers":2,"num_attention_heads":4,"num_experts":8,"num_experts_per_tok":2})",
                           R"({"model_type":"mixtral","vocab_size":64,"hidden_size":32,"intermediate_size":16,
                             "num_hidden_layers":2,"num_attention_heads":4,"num_local_experts":8,"num_experts_per_tok":2})"}) {
    ModelConfig c = ModelConfig::from_json(Json::parse(text), "config.json");
    INFO(c.model_type());
    CHECK_THROWS_WITH(Budget::per_layer(c, {4, 2}).validate(c),
                      Catch::Contains("configs have one") && Catch::Contains("keep the same number in every layer"));
    CHECK_NOTHROW(Budget::per_layer(c, {4, 4}).validate(c));
    CHECK(Budget::fraction(c, 0.25).keep == std::vector<int64_t>{2, 2});
  }
}

namespace {

// Two MoE layers of 8 routed experts, top-2: layer 0's scores are concentrated (0.5, 0.3,
// then 0.2 spread evenly), layer 1's flat (1/8 each).
RouteStats mass_stats() {
  RouteStats s;
  s.tokens = 1;
  s.layers.resize(2);
  const double rest = 0.2 / 6;
  s.layers[0].prob_sum = torch::tensor({0.3, rest, 0.5, rest, rest, rest, rest, rest}, torch::kFloat64);
  s.layers[1].prob_sum = torch::full({8}, 0.125, torch::kFloat64);
  s.layers[0].select_count = torch::tensor({30L, 4L, 50L, 4L, 4L, 4L, 2L, 2L}, torch::kInt64);  // of 100
  s.layers[1].select_count = torch::full({8}, 5L, torch::kInt64);
  for (auto& l : s.layers) {
    l.moe = true;
    l.easy_ep = l.reap_sum = l.gate_sum = torch::zeros({8}, torch::kFloat64);
  }
  return s;
}

}  // namespace

TEST_CASE("keep-mass (ESFT): the fewest experts reaching the share, never fewer than top_k", "[surgery][selection]") {
  ModelConfig c = tiny_config(R"({"num_shared_experts":0,"num_experts_per_tok":2})");
  RouteStats s = mass_stats();
  SelectionSources src;
  src.stats = &s;
  auto choose = [&](const char* method, double p) {
    BudgetRequest b;
    b.keep_mass = p;
    return choose_module(c, {method, b, false, 0}, src);
  };
  // Layer 0: 0.5 + 0.3 = 0.8 reaches 0.8 with two experts, 0.5 alone reaches 0.5; layer 1:
  // 0.8 needs 7 of the flat 1/8s (6/8 = 0.75 < 0.8), 0.5 needs 4.
  ModuleChoice m = choose("router-prob", 0.8);
  CHECK(m.budget.keep == std::vector<int64_t>{2, 7});
  CHECK(m.selection.kept.at(0) == std::vector<int64_t>{0, 2});
  CHECK(m.report["layers"]["0"]["score_mass_kept"].get<double>() == Approx(0.8));
  CHECK(m.report["layers"]["1"]["score_mass_kept"].get<double>() == Approx(7.0 / 8));
  CHECK(m.report["keep_mass"]["padded_to_one_count"] == false);
  // 0.5 is reached by expert 2 alone, but top_k = 2 experts stay: the module routes as the
  // model does. Frequency sums its own score, the selection counts (same shares here).
  CHECK(choose("router-prob", 0.5).budget.keep == std::vector<int64_t>{2, 4});
  CHECK(choose("frequency", 0.8).budget.keep == std::vector<int64_t>{2, 7});
  CHECK(choose("router-prob", 1.0).budget.keep == std::vector<int64_t>{8, 8});
  // Only ESFT's two scores can be summed; P outside (0, 1] is refused.
  CHECK_THROWS_WITH(choose("reap", 0.5), Catch::Contains("--keep-mass") && Catch::Contains("router-prob"));
  CHECK_THROWS_WITH(choose("random", 0.5), Catch::Contains("--keep-mass"));
  CHECK_THROWS_WITH(choose("router-prob", 0.0), Catch::Contains("must be in (0, 1]"));
  CHECK_THROWS_WITH(choose("router-prob", 1.5), Catch::Contains("must be in (0, 1]"));
  BudgetRequest both;
  both.keep_mass = 0.5;
  both.keep = 2;
  CHECK_THROWS_WITH(choose_module(c, {"router-prob", both, false, 0}, src), Catch::Contains("exactly one of"));
}

TEST_CASE("keep-mass (ESFT) on a family with one expert count keeps the largest layer's count everywhere",
          "[surgery][selection][families]") {
  ModelConfig c = ModelConfig::from_json(
      Json::parse(R"({"model_type":"qwen3_moe","vocab_size":64,"hidden_size":32,"moe_intermediate_size":16,
                      "num_hidden_layers":2,"num_attention_heads":4,"num_experts":8,"num_experts_per_tok":2})"),
      "config.json");
  RouteStats s = mass_stats();
  SelectionSources src;
  src.stats = &s;
  BudgetRequest b;
  b.keep_mass = 0.8;
  ModuleChoice m = choose_module(c, {"router-prob", b, false, 0}, src);
  CHECK(m.budget.keep == std::vector<int64_t>{7, 7});  // layer 1 needs 7: layer 0 keeps 7 too
  CHECK(m.report["keep_mass"]["padded_to_one_count"] == true);
  CHECK(m.report["layers"]["0"]["score_mass_kept"].get<double>() >= 0.8);
}

TEST_CASE("per-layer auto spreads the budget's total to the layers with the largest shares", "[surgery][selection]") {
  ModelConfig c = tiny_config(R"({"num_shared_experts":0,"num_experts_per_tok":2})");
  RouteStats s = mass_stats();
  SelectionSources src;
  src.stats = &s;
  auto choose = [&](const ModelConfig& config, BudgetRequest b) { return choose_module(config, {"router-prob", b, false, 0}, src); };
  BudgetRequest b;
  b.keep = 4;
  b.per_layer_auto = true;
  // 8 experts in all, top_k = 2 per layer first; the 4 left go to layer 1, whose next experts
  // hold 1/8 each, not to layer 0, whose next hold 0.2 / 6 each.
  ModuleChoice m = choose(c, b);
  CHECK(m.budget.keep == std::vector<int64_t>{2, 6});
  CHECK(m.selection.kept.at(0) == std::vector<int64_t>{0, 2});
  CHECK(m.report["per_layer"]["spread_by"] == "router-prob");
  CHECK(m.report["layers"]["0"]["spread_share_kept"].get<double>() == Approx(0.8));
  CHECK(m.report["layers"]["1"]["spread_share_kept"].get<double>() == Approx(0.75));
  // The same from a fraction: half of 8 per layer is 8 in all.
  BudgetRequest f;
  f.keep_fraction = 0.5;
  f.per_layer_auto = true;
  CHECK(choose(c, f).budget.keep == std::vector<int64_t>{2, 6});
  // A total of exactly top_k per layer has nothing to spread; below it is refused.
  b.keep = 2;
  CHECK(choose(c, b).budget.keep == std::vector<int64_t>{2, 2});
  b.keep = 1;
  CHECK_THROWS_WITH(choose(c, b), Catch::Contains("--per-layer auto") && Catch::Contains("fewer than top_k per layer (4)"));
  // Only --keep or --keep-fraction has a total to spread.
  BudgetRequest listed;
  listed.keep_per_layer = {3, 3};
  listed.per_layer_auto = true;
  CHECK_THROWS_WITH(choose(c, listed), Catch::Contains("--keep or --keep-fraction"));
  // A family with one expert count refuses it (rather than padding past the total).
  ModelConfig qwen = ModelConfig::from_json(
      Json::parse(R"({"model_type":"qwen3_moe","vocab_size":64,"hidden_size":32,"moe_intermediate_size":16,
                      "num_hidden_layers":2,"num_attention_heads":4,"num_experts":8,"num_experts_per_tok":2})"),
      "config.json");
  b.keep = 4;
  CHECK_THROWS_WITH(choose(qwen, b), Catch::Contains("qwen3_moe configs have one num_experts") &&
                                         Catch::Contains("refused rather than padded"));
}

TEST_CASE("max-bytes: the largest module that fits, spread by share per byte, never below top_k",
          "[surgery][selection]") {
  ModelConfig c = tiny_config(R"({"num_shared_experts":0,"num_experts_per_tok":2})");
  RouteStats s = mass_stats();
  SelectionSources src;
  src.stats = &s;
  ModuleBytes size;
  size.fixed = 1000;
  size.per_expert = {100, 100};
  src.bytes = &size;
  auto choose = [&](const ModelConfig& config, uint64_t max) {
    BudgetRequest b;
    b.max_bytes = max;
    return choose_module(config, {"router-prob", b, false, 0}, src);
  };
  // The least: 1000 + 2 x 100 + 2 x 100 = 1400 bytes; 450 more buy 4 experts, all in layer 1.
  ModuleChoice m = choose(c, 1850);
  CHECK(m.budget.keep == std::vector<int64_t>{2, 6});
  CHECK(m.report["max_bytes"]["planned_bytes"] == 1800);
  CHECK(m.report["max_bytes"]["spread_by"] == "router-prob");
  CHECK(choose(c, 1400).budget.keep == std::vector<int64_t>{2, 2});
  CHECK_THROWS_WITH(choose(c, 1399), Catch::Contains("--max-bytes: 1399 bytes: is below the smallest possible module, 1400 bytes"));
  // Layer 1's experts cost three times as much: its 1/8 per 300 bytes still beats layer 0's
  // 0.2/6 per 100 once; then its next no longer fits and layer 0 takes one.
  size.per_expert = {100, 300};
  CHECK(choose(c, 1800 + 450).budget.keep == std::vector<int64_t>{3, 3});
  // One expert count for every layer: the largest that fits (4 x 200 + 1000 = 1800 <= 1850 < 2000).
  ModelConfig qwen = ModelConfig::from_json(
      Json::parse(R"({"model_type":"qwen3_moe","vocab_size":64,"hidden_size":32,"moe_intermediate_size":16,
                      "num_hidden_layers":2,"num_attention_heads":4,"num_experts":8,"num_experts_per_tok":2})"),
      "config.json");
  size.per_expert = {100, 100};
  ModuleChoice q = choose(qwen, 1850);
  CHECK(q.budget.keep == std::vector<int64_t>{4, 4});
  CHECK(q.report["max_bytes"]["one_count_in_every_layer"] == true);
  CHECK(choose(qwen, 100000).budget.keep == std::vector<int64_t>{8, 8});
  // Without the parent's sizes there is nothing to plan with.
  src.bytes = nullptr;
  CHECK_THROWS_WITH(choose(c, 1850), Catch::Contains("needs the parent checkpoint's tensor sizes"));
}

TEST_CASE("explicit keeps what the file lists, takes no budget, and --exclude acts only on the listed layers",
          "[surgery][selection][bad-input]") {
  ModelConfig c = tiny_config();  // 2 MoE layers, 7 routed experts + 1 shared
  ExpertSelection listed;
  listed.kept = {{1, {1, 3, 4}}};  // layer 0 not listed
  SelectionSources src;
  src.listed = &listed;
  ModuleRequest req;
  req.method = "explicit";
  ModuleChoice kept = choose_module(c, req, src);
  CHECK(kept.selection.kept.at(0) == std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6});  // unlisted: every expert
  CHECK(kept.selection.kept.at(1) == std::vector<int64_t>{1, 3, 4});
  CHECK(kept.budget.keep == std::vector<int64_t>{8, 4});  // what it kept, the shared expert included
  CHECK(kept.report["module_top_k"] == c.num_experts_per_tok);
  req.exclude = true;
  ModuleChoice excluded = choose_module(c, req, src);
  CHECK(excluded.selection.kept.at(0) == std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6});  // untouched, not emptied
  CHECK(excluded.selection.kept.at(1) == std::vector<int64_t>{0, 2, 5, 6});
  req.exclude = false;
  req.budget.keep = 2;
  CHECK_THROWS_WITH(choose_module(c, req, src), Catch::Contains("takes no budget"));
  req.budget.keep.reset();
  CHECK_THROWS_WITH(choose_module(c, req, SelectionSources{}), Catch::Contains("needs an experts file"));
}
