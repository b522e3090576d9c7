// `emo eval ppl --pool N` (PplOptions::pool): each window routed inside its own document
// pool, as allenai/EMO evaluates (eval_document_expert_pool).
#include <catch2/catch.hpp>

#include "eval/eval_fixtures.h"
#include "eval/perplexity.h"
#include "eval/perplexity_request.h"

using namespace emo;
using namespace emo::test;

namespace {

std::vector<TextDoc> three_docs() {
  return {{"m", "math", "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.", 1},
          {"c", "code", "def add(a, b):\n    return a + b\n\nprint(add(2, 3))\n", 2},
          {"l", "legal", "The licensee shall not sublicense the software without written consent.", 3}};
}

double loss_of(const PplOptions& o) {
  EvalModel& m = eval_model();
  return evaluate_perplexity(*m.model, *m.tokenizer, three_docs(), o).by_domain.at("all").loss();
}

}  // namespace

TEST_CASE("perplexity inside document pools: every expert is per-token routing, padding never picks a pool",
          "[eval][pool]") {
  // micro: 7 routed experts + 1 shared, top-3 (2 routed). Windows of 16 tokens cut the
  // documents into windows of several lengths, so a batch of 4 pads its shorter rows.
  PplOptions o;
  o.window = 16;
  o.batch = 4;
  const double per_token = loss_of(o);

  o.pool = 7;  // the pool holds every routed expert: no mask at all
  CHECK(loss_of(o) == Approx(per_token).epsilon(1e-6));

  o.pool = 2;  // the smallest pool: each window's two experts per layer route every token
  const double pooled = loss_of(o);
  CHECK(std::abs(pooled - per_token) > 1e-3);

  // One window per forward pass (no padding) gives the same numbers: a row's padding does
  // not take part in choosing its window's pool.
  o.batch = 1;
  CHECK(loss_of(o) == Approx(pooled).epsilon(1e-6));

  o.pool = 1;  // smaller than the routed top-k: refused, naming the flag
  CHECK_THROWS_WITH(loss_of(o), Catch::Contains("--pool") && Catch::Contains("routed top-k"));
}

TEST_CASE("a perplexity request from its fields: the document filter, the pool, its output file", "[eval][ppl][bad-input]") {
  const auto& spec = perplexity_request_spec();
  PerplexityRequest r = build_request(spec, {{"model", {"m"}}, {"data", {"c.jsonl.gz"}}, {"domain", {"math"}},
                                             {"limit", {"50"}}, {"pool", {"16"}}, {"out", {"ppl.json"}}});
  CHECK(r.filter.domain == "math");
  CHECK(r.filter.limit == 50);
  CHECK(r.filter.text_field == "text");
  CHECK(r.pool == 16);
  CHECK(r.window == 256);
  CHECK(r.out == "ppl.json");
  CHECK_FALSE(field_spec(spec.fields, "out").recipe_setting);
  CHECK(field_spec(spec.fields, "data").input_path);
  CHECK_THROWS_WITH(build_request(spec, {{"pool", {"-1"}}}), Catch::Contains("--pool"));
}
