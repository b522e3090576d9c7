// How many examples are enough: the Jaccard curve over 1, 2, 4, ... examples.
#include <catch2/catch.hpp>

#include "surgery/stability.h"
#include "surgery/surgery_fixtures.h"
#include "test_util.h"

using namespace emo;
using namespace emo::test;

TEST_CASE("jaccard: intersections over unions, per layer and pooled", "[surgery][stability]") {
  ExpertSelection a, b;
  a.kept = {{0, {1, 2, 3}}, {1, {4, 5}}};
  b.kept = {{0, {2, 3, 4}}, {1, {4, 5}}};
  std::map<int, double> per;
  // Layer 0: {2, 3} of {1, 2, 3, 4}; layer 1 equal; pooled (2 + 2) / (4 + 2).
  CHECK(jaccard(a, b, &per) == Approx(4.0 / 6));
  CHECK(per.at(0) == Approx(0.5));
  CHECK(per.at(1) == Approx(1.0));
  CHECK(jaccard(a, a) == 1.0);
}

TEST_CASE("stability: doubling sizes, statistics added equal routing together, and the stop rule",
          "[surgery][stability]") {
  ModelConfig c = tiny_config();
  TempDir tmp;
  write_random_checkpoint(c, tmp / "m", 7);
  Model model = Model::load(Checkpoint::open(tmp / "m"));
  TokenizedExamples ex = random_examples(c.vocab_size, 12, 20, 4);  // lengths 20, 19, ..., 9
  ModuleRequest req;
  req.budget.keep = 3;
  // A threshold nothing reaches but identity, with a patience no run of 12 examples meets:
  // every power of two up to 12 is routed.
  StabilityCurve all = stability_curve(model, ex, req, {}, 1.0, 10, {});
  REQUIRE(all.points.size() == 4);
  CHECK_FALSE(all.reached);
  std::vector<int64_t> sizes;
  for (const auto& p : all.points) sizes.push_back(p.examples);
  CHECK(sizes == std::vector<int64_t>{1, 2, 4, 8});
  CHECK(std::isnan(all.points[0].jaccard));
  CHECK(all.points.back().tokens == 20 + 19 + 18 + 17 + 16 + 15 + 14 + 13);
  // Each size's selection is what the first n examples routed at once select.
  for (const auto& p : all.points) {
    TokenizedExamples first;
    first.ids.assign(ex.ids.begin(), ex.ids.begin() + p.examples);
    RouteStats together = collect_route_stats(model, first, {});
    SelectionSources src;
    src.stats = &together;
    CHECK(choose_module(c, req, src).selection.kept == p.choice.selection.kept);
  }
  for (size_t i = 1; i < all.points.size(); ++i)
    CHECK(all.points[i].jaccard == Approx(jaccard(all.points[i - 1].choice.selection, all.points[i].choice.selection)));
  // The stop rule: the first size whose similarity reaches the threshold (patience 1).
  const double low = 1e-9;  // every comparison reaches it
  StabilityCurve first = stability_curve(model, ex, req, {}, low, 1, {});
  CHECK(first.reached);
  CHECK(first.points.size() == 2);
  CHECK(stability_curve(model, ex, req, {}, low, 2, {}).points.size() == 3);
  CHECK(first.to_json()["examples_used"] == 2);
  // Bad settings are one sentence.
  CHECK_THROWS_WITH(stability_curve(model, ex, req, {}, 0.0, 1, {}), Catch::Contains("threshold must be in (0, 1]"));
  CHECK_THROWS_WITH(stability_curve(model, ex, req, {}, 1.5, 1, {}), Catch::Contains("threshold must be in (0, 1]"));
  CHECK_THROWS_WITH(stability_curve(model, ex, req, {}, 0.9, 0, {}), Catch::Contains("--patience: must be at least 1"));
  CHECK_THROWS_WITH(stability_curve(model, TokenizedExamples{}, req, {}, 0.9, 1, {}), Catch::Contains("no examples"));
}
