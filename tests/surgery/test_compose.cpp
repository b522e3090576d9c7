// Several tasks in one module: built statistics where each rule's answer is worked out by hand.
#include <catch2/catch.hpp>

#include "surgery/route_request.h"
#include "surgery/select_request.h"
#include "surgery/surgery_fixtures.h"

using namespace emo;
using namespace emo::test;

namespace {

// Both layers alike, 8 routed experts, router probability shares:
//   A: 0.5 0.3 0.2 0 0 0 0 0        (A's own top 3: {0, 1, 2})
//   B: 0 0.4 0 0.35 0.25 0 0 0      (B's own top 3: {1, 3, 4})
RouteStats task_stats(std::vector<double> shares) {
  RouteStats s;
  s.tokens = 1;
  s.layers.resize(2);
  for (auto& l : s.layers) {
    l.moe = true;
    l.prob_sum = torch::tensor(shares, torch::kFloat64);
    l.select_count = torch::zeros({8}, torch::kInt64);
    l.easy_ep = l.reap_sum = l.gate_sum = torch::zeros({8}, torch::kFloat64);
  }
  return s;
}

struct Tasks {
  ModelConfig c = tiny_config(R"({"num_shared_experts":0,"num_experts_per_tok":2})");
  RouteStats a = task_stats({0.5, 0.3, 0.2, 0, 0, 0, 0, 0});
  RouteStats b = task_stats({0, 0.4, 0, 0.35, 0.25, 0, 0, 0});
  ModuleChoice choose(int64_t keep, const std::string& rule, double weight_a = 1, bool avoid_b = false,
                      const std::string& method = "router-prob") {
    SelectionSources src;
    src.tasks = {{"a", weight_a, &a, false}, {"b", 1.0, &b, avoid_b}};
    BudgetRequest budget;
    budget.keep = keep;
    return choose_module(c, {method, budget, false, 0, rule}, src);
  }
};

}  // namespace

TEST_CASE("compose joint: the largest weighted mean share", "[surgery][compose]") {
  Tasks t;
  // Equal weights: 0.25 0.35 0.1 0.175 0.125 ... -> {1, 0, 3, 4} at 4 kept.
  ModuleChoice m = t.choose(4, "joint");
  CHECK(m.selection.kept.at(0) == std::vector<int64_t>{0, 1, 3, 4});
  CHECK(m.selection.kept.at(1) == std::vector<int64_t>{0, 1, 3, 4});
  // A's own 4 are {0, 1, 2, 3} (3 by the lower id among zeros): 3 of them kept; B's all.
  CHECK(m.report["tasks"]["a"]["own_module_kept"].get<double>() == Approx(0.75));
  CHECK(m.report["tasks"]["b"]["own_module_kept"].get<double>() == Approx(1.0));
  CHECK(m.report["tasks"]["a"]["share_kept"].get<double>() == Approx(0.8));
  CHECK(m.report["tasks"]["a"]["own_share"].get<double>() == Approx(1.0));
  CHECK(m.report["compose"] == "joint");
  // A weighted twice: (2A + B) / 3 = 0.333 0.333 0.133 0.117 0.083 -> {0, 1, 2} at 3.
  CHECK(t.choose(3, "joint", 2.0).selection.kept.at(0) == std::vector<int64_t>{0, 1, 2});
}

TEST_CASE("compose union: each task's own head, the budget split by weight (D'Hondt)", "[surgery][compose]") {
  Tasks t;
  // Equal weights, 4 kept: A takes 0; B takes 1; A's head {0, 1} counts 2, so B takes 3;
  // then A (1/3) ties B (1/3, its head {1, 3}) and the first task wins: 2.
  CHECK(t.choose(4, "union").selection.kept.at(0) == std::vector<int64_t>{0, 1, 2, 3});
  // Joint chose 4 over 2 (0.125 > 0.1): the rules differ exactly there.
  CHECK(t.choose(4, "joint").selection.kept.at(0) == std::vector<int64_t>{0, 1, 3, 4});
  ModuleChoice m = t.choose(4, "union");
  CHECK(m.report["tasks"]["a"]["own_module_kept"].get<double>() == Approx(1.0));
  CHECK(m.report["tasks"]["b"]["own_module_kept"].get<double>() == Approx(0.75));  // B's own {0, 1, 3, 4}
}

TEST_CASE("compose and-not: a module for A without what B's own module keeps", "[surgery][compose]") {
  Tasks t;
  // B's own 3 are {1, 3, 4}: A keeps 0 and 2, then the lowest ids among its zeros: 5.
  ModuleChoice m = t.choose(3, "joint", 1.0, true);
  CHECK(m.selection.kept.at(0) == std::vector<int64_t>{0, 2, 5});
  CHECK(m.report["tasks"]["b"]["avoided"] == true);
  CHECK(m.report["tasks"]["b"]["own_module_kept"].get<double>() == Approx(0.0));
  CHECK(m.report["tasks"]["a"]["own_module_kept"].get<double>() == Approx(2.0 / 3));
  CHECK(t.choose(3, "union", 1.0, true).selection.kept.at(0) == std::vector<int64_t>{0, 2, 5});
  // B's own 6 leave 2 experts for a budget of 6: refused, saying so.
  CHECK_THROWS_WITH(t.choose(6, "joint", 1.0, true),
                    Catch::Contains("--and-not: layer 0: leaving out the avoided tasks' 6 experts leaves 2 of the 6"));
}

TEST_CASE("compose: bad tasks are one clear sentence", "[surgery][compose][bad-input]") {
  Tasks t;
  CHECK_THROWS_WITH(t.choose(3, "joint", 0.0), Catch::Contains("--weight: a: must be a positive number"));
  CHECK_THROWS_WITH(t.choose(3, "joint", -1.0), Catch::Contains("must be a positive number"));
  CHECK_THROWS_WITH(t.choose(3, "best"), Catch::Contains("--compose: best: unknown rule (joint, union)"));
  CHECK_THROWS_WITH(t.choose(3, "joint", 1.0, false, "layerwise-greedy"), Catch::Contains("per-expert scores"));
  CHECK_THROWS_WITH(t.choose(3, "joint", 1.0, false, "random"), Catch::Contains("per-expert scores"));
  SelectionSources only_avoided;
  only_avoided.tasks = {{"b", 1.0, &t.b, true}};
  BudgetRequest keep3;
  keep3.keep = 3;
  CHECK_THROWS_WITH(choose_module(t.c, {"router-prob", keep3, false, 0, "joint"}, only_avoided),
                    Catch::Contains("every task is left out"));
}

TEST_CASE("a select request from its fields: several tasks, their weights, checked numbers", "[surgery][compose][bad-input]") {
  const auto& spec = select_request_spec();
  SelectRequest r = build_request(
      spec, {{"model", {"m"}}, {"data", {"math=g.jsonl", "code=c.jsonl"}}, {"weight", {"math=2"}}, {"and-not", {"legal"}},
             {"compose", {"union"}}, {"shots", {"8"}}, {"keep-fraction", {"0.25"}}, {"threshold", {"0.8"}}, {"out", {"o"}}});
  CHECK(r.data == std::vector<std::string>{"math=g.jsonl", "code=c.jsonl"});
  CHECK(r.examples.source.path.empty());  // several tasks: each one's path is its own
  CHECK(r.examples.source.shots == 8);
  CHECK(r.weights == std::vector<std::string>{"math=2"});
  CHECK(r.and_not == std::vector<std::string>{"legal"});
  CHECK(r.compose == "union");
  CHECK(r.budget.keep_fraction == 0.25);
  CHECK(r.threshold == 0.8);
  CHECK(r.method == "router-prob");
  CHECK(parse_weight("math=2").second == 2.0);

  CHECK_THROWS_WITH(build_request(spec, {{"patience", {"x"}}}), Catch::Contains("--patience"));
  // What CLI11 and a recipe check before anything runs: the rows' own checks.
  auto check = [&](const std::string& key, const std::string& value) { return field_spec(spec.fields, key).check(value); };
  CHECK(check("threshold", "1").empty());
  CHECK_THAT(check("threshold", "0"), Catch::Contains("must be in (0, 1]"));
  CHECK_THAT(check("patience", "0"), Catch::Contains("at least 1"));
  CHECK_THAT(check("weight", "math=-1"), Catch::Contains("positive number"));
  CHECK(field_spec(spec.fields, "data").named_path);
  CHECK(field_spec(spec.fields, "stats").named_path);
  CHECK_FALSE(field_spec(spec.fields, "report").recipe_setting);
  // run_select refuses a request without its output or model before reading anything.
  CHECK_THROWS_WITH(run_select(build_request(spec, {{"model", {"m"}}})), Catch::Contains("--out"));
}

TEST_CASE("a route request from its fields: the example rows and the model restriction", "[surgery][bad-input]") {
  const auto& spec = route_request_spec();
  RouteRequest r = build_request(spec, {{"model", {"m"}}, {"data", {"d.jsonl"}}, {"limit", {"2"}}, {"experts", {"e.json"}},
                                        {"verify-hash", {}}, {"out", {"s.safetensors"}}});
  CHECK(r.examples.source.path == "d.jsonl");
  CHECK(r.examples.source.limit == 2);
  CHECK(r.experts == "e.json");
  CHECK(r.verify_hash);
  CHECK(field_spec(spec.fields, "experts").input_path);
  CHECK(field_spec(spec.fields, "model").required);
  CHECK_THROWS_WITH(build_request(spec, {{"batch", {"two"}}}), Catch::Contains("--batch"));
}
