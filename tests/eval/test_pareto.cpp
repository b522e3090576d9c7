// emo eval pareto: a model's modules beside models trained from scratch. A module point is
// what `emo select` + `emo extract` + `emo eval ppl` give for the same examples and budget;
// a whole model's point is `emo eval ppl`; bytes are the extracted module's weight bytes;
// the chart carries exactly the points of pareto.json; findings compare the right points.
#include <catch2/catch.hpp>
#include <cmath>

#include "cli_util.h"
#include "eval/eval_fixtures.h"
#include "eval/pareto.h"

using namespace emo;
using namespace emo::test;

namespace {

const Json& point_at(const Json& j, const std::string& series, double fraction) {
  for (const auto& p : j["points"])
    if (p["series"] == series && p["fraction"].get<double>() == fraction) return p;
  FAIL("no point " << series << " at " << fraction);
  throw;
}

const std::string kCode1 = "def add(a, b):\\n    return a + b\\n";
const std::string kMath1 = "Question: 2 + 3?\\nAnswer: 5. Then 5 times 4 is 20.";

// Two domains of three documents; each domain's first document is its example.
void write_corpus(const fs::path& file) {
  write_file_atomic(file,
                    "{\"id\": \"c1\", \"domain\": \"code\", \"text\": \"" + kCode1 + "\"}\n"
                    "{\"id\": \"m1\", \"domain\": \"math\", \"text\": \"" + kMath1 + "\"}\n"
                    "{\"id\": \"c2\", \"domain\": \"code\", \"text\": \"import os\\nprint(os.getcwd())\\n\"}\n"
                    "{\"id\": \"m2\", \"domain\": \"math\", \"text\": \"12 divided by 4 is 3, so she has 3 left.\"}\n"
                    "{\"id\": \"c3\", \"domain\": \"code\", \"text\": \"for i in range(3):\\n    print(i * i)\\n\"}\n"
                    "{\"id\": \"m3\", \"domain\": \"math\", \"text\": \"The sum of 7 and 8 is 15.\"}\n");
}

}  // namespace

TEST_CASE("emo eval pareto: points are select + extract + eval ppl, bytes are the module's, the chart its points",
          "[eval][pareto][cli]") {
  EvalModel& em = eval_model();  // micro: 2 MoE layers of 8 experts (7 routed + 1 shared), top-3
  TempDir tmp;
  const std::string model = em.dir.string(), corpus = (tmp / "corpus.jsonl").string(), out = (tmp / "p").string();
  write_corpus(corpus);
  RunResult r = run_emo("eval pareto --model " + model + " --name m --baseline b=" + model + " --scratch k=" + model +
                        " --keep-fraction 0.5,0.25 --example-min-tokens 1 --seed 3 --corpus " + corpus +
                        " --batch 2 --json -v --out " + out);
  Json j = json_of(r);
  CHECK(Json::parse(read_text_file(fs::path(out) / "pareto.json"))["points"] == j["points"]);
  // Per model with modules: the full model, then per budget 1-document, whole-split and
  // random modules; then the from-scratch model: (1 + 2 * 3) * 2 + 1 points, 2 domains each.
  REQUIRE(j["points"].size() == 15);
  // k is m's checkpoint: scored once (its perplexities below equal emo eval ppl all the same).
  CHECK(r.err.find("eval pareto [28/30]: k: the checkpoint of an earlier point, its perplexities reused") !=
        std::string::npos);
  CHECK(r.err.find("k (100%), math") == std::string::npos);
  CHECK(j["domains"][0] == Json{{"domain", "code"}, {"examples", Json::array({"c1"})}, {"scored_docs", 2}});
  CHECK(j["domains"][1]["examples"] == Json::array({"m1"}));

  // The whole model: emo eval ppl on each domain's scored documents, exactly (one domain at
  // a time, as pareto batches them: LibTorch 2.x's kernels may round differently when the
  // batch holds other windows).
  write_file_atomic(tmp / "scored.jsonl", read_text_file(corpus).substr(read_text_file(corpus).find("{\"id\": \"c2\"")));
  write_file_atomic(tmp / "code-scored.jsonl",
                    "{\"domain\": \"code\", \"text\": \"import os\\nprint(os.getcwd())\\n\"}\n"
                    "{\"domain\": \"code\", \"text\": \"for i in range(3):\\n    print(i * i)\\n\"}\n");
  write_file_atomic(tmp / "math-scored.jsonl",
                    "{\"domain\": \"math\", \"text\": \"12 divided by 4 is 3, so she has 3 left.\"}\n"
                    "{\"domain\": \"math\", \"text\": \"The sum of 7 and 8 is 15.\"}\n");
  for (const char* domain : {"code", "math"}) {
    Json ppl = json_of(run_emo("eval ppl --model " + model + " --data " + (tmp / (std::string(domain) + "-scored.jsonl")).string() +
                               " --batch 2 --json"));
    for (const char* series : {"m", "b", "k"})
      CHECK(point_at(j, series, 1)["ppl"][domain] == ppl["domains"][domain]["perplexity"]);
  }
  CHECK(point_at(j, "m", 1)["keep"] == 8);

  // The 1-document module of math at 50%: emo select on the example, extracted, scored.
  write_file_atomic(tmp / "m1.jsonl", "{\"text\": \"" + kMath1 + "\"}\n");
  const std::string experts = (tmp / "m1-experts.json").string(), module = (tmp / "m1-module").string();
  json_of(run_emo("select --model " + model + " --data " + (tmp / "m1.jsonl").string() +
                  " --method router-prob --keep-fraction 0.5 --out " + experts + " --json"));
  CHECK(point_at(j, "m: module, 1 document", 0.5)["experts"]["math"] == Json::parse(read_text_file(experts)));
  CHECK(point_at(j, "m", 1)["experts"].empty());
  json_of(run_emo("extract --model " + model + " --experts " + experts + " --out " + module + " --json"));
  Json mppl = json_of(run_emo("eval ppl --model " + module + " --data " + (tmp / "math-scored.jsonl").string() +
                              " --batch 2 --json"));
  const Json& point = point_at(j, "m: module, 1 document", 0.5);
  // Masked vs extracted: the router softmax sums fewer terms, hence 1e-6 relative.
  CHECK(rel(point["ppl"]["math"].get<double>(), mppl["domains"]["math"]["perplexity"].get<double>()) <= 1e-6);
  CHECK(point["ppl"]["math"] != point_at(j, "m", 1)["ppl"]["math"]);
  CHECK(point["keep"] == 4);
  Json info = json_of(run_emo("inspect " + module + " --json"));
  uint64_t module_bytes = 0;
  for (const auto& [dtype, n] : info["bytes_by_dtype"].items()) module_bytes += n.get<uint64_t>();
  CHECK(point["bytes"] == module_bytes);
  CHECK(point["params"] == info["params"]["total"]);
  CHECK(point_at(j, "m: module, 1 document", 0.25)["bytes"] < point["bytes"]);
  // The mean is over the domains.
  CHECK(point["mean_ppl"].get<double>() ==
        Approx((point["ppl"]["code"].get<double>() + point["ppl"]["math"].get<double>()) / 2).epsilon(1e-12));

  // The random module: emo select --method random with the same seed and budget.
  const std::string rexperts = (tmp / "random.json").string(), rmodule = (tmp / "random-module").string();
  json_of(run_emo("select --model " + model + " --method random --seed 3 --keep-fraction 0.25 --out " + rexperts +
                  " --json"));
  json_of(run_emo("extract --model " + model + " --experts " + rexperts + " --out " + rmodule + " --json"));
  Json rppl = json_of(run_emo("eval ppl --model " + rmodule + " --data " + (tmp / "scored.jsonl").string() +
                              " --batch 2 --json"));
  for (const char* domain : {"code", "math"})
    CHECK(rel(point_at(j, "m: random module", 0.25)["ppl"][domain].get<double>(),
              rppl["domains"][domain]["perplexity"].get<double>()) <= 1e-6);

  // The chart: every point once, at (MB, mean); module lines end at their model (100%).
  const std::string svg = read_text_file(fs::path(out) / "pareto.svg");
  size_t circles = 0;
  for (size_t at = svg.find("class=\"point\""); at != std::string::npos; at = svg.find("class=\"point\"", at + 1))
    ++circles;
  // 15 points; a model with modules is no line of its own but the end of its 3 module lines:
  // 15 - 2 + 2 * 3.
  CHECK(circles == 19);
  CHECK(svg.find("data-series=\"m\"") == std::string::npos);
  CHECK(svg.find("data-series=\"k\"") != std::string::npos);
  CHECK(svg.find("data-series=\"b: random module\"") != std::string::npos);
  std::string md = read_text_file(fs::path(out) / "pareto.md");
  CHECK(md.find("| m: module, 1 document 50% | 4 |") != std::string::npos);
  CHECK(md.find("![mean perplexity vs weights](pareto.svg)") != std::string::npos);
  CHECK(md.find("- At 25% (2 experts per layer") != std::string::npos);
}

TEST_CASE("pareto findings: each budget's module against the from-scratch point of nearest memory",
          "[eval][pareto]") {
  ParetoRequest r;
  r.model = {"emo", "e"};
  r.baselines = {{"standard", "s"}};
  r.scratch = {{"standard MoE", "a"}, {"standard MoE", "b"}, {"dense", "d"}};
  r.fractions = {0.5, 0.25};
  auto point = [](std::string series, double fraction, uint64_t bytes, double a, double b) {
    ParetoPoint p;
    p.series = series;
    p.model = series.substr(0, series.find(':'));
    p.fraction = fraction;
    p.keep = int64_t(32 * fraction);
    p.bytes = bytes;
    p.ppl = {{"code", a}, {"math", b}};
    return p;
  };
  ParetoResult res;
  res.points = {point("emo: module, 1 document", 0.25, 6'200'000, 10, 20),
                point("emo: module, whole split", 0.25, 6'200'000, 9, 19),
                point("standard: module, 1 document", 0.25, 6'200'000, 40, 20),
                point("emo: module, 1 document", 0.5, 7'800'000, 8, 16),
                point("standard MoE", 1, 6'300'000, 12, 20),  // within 10% of 6.2 MB
                point("standard MoE", 1, 7'000'000, 1, 1),    // 6.2 MB's nearest is the one above
                point("dense", 1, 5'000'000, 1, 1)};          // 19% away from 6.2 MB
  res.points[4].model = "moe-8";
  std::vector<std::string> f = pareto_findings(r, res);
  REQUIRE(f.size() == 2);
  CHECK(f[0] ==
        "At 25% (8 experts per layer, 6.20 MB), emo: module, 1 document: 15.00 (whole split: 14.00); standard: "
        "module, 1 document: 30.00; standard MoE from scratch (moe-8, 6.30 MB): 16.00, the module 6.2% lower.");
  // At 50% the nearest from-scratch MoE (7.0 MB) is 10.3% away: no comparison.
  CHECK(f[1] == "At 50% (16 experts per layer, 7.80 MB), emo: module, 1 document: 12.00.");
}

TEST_CASE("emo eval pareto: bad input is one line, a non-zero exit, nothing written", "[eval][pareto][cli][bad-input]") {
  EvalModel& em = eval_model();
  TempDir tmp;
  const std::string model = em.dir.string(), corpus = (tmp / "corpus.jsonl").string(), out = (tmp / "out").string();
  write_corpus(corpus);
  const std::string base = "eval pareto --model " + model + " --corpus " + corpus + " --out " + out + " ";
  auto expect_failure = [&](const std::string& args, const std::string& fragment) {
    check_refused(args, run_emo(base + args), fragment, out);
  };
  expect_failure("--keep-fraction 1", "--keep-fraction: 1.0000: a budget is a fraction of the experts in (0, 1)");
  expect_failure("--keep-fraction 0.25,0.25", "budget listed twice");
  expect_failure("--method random", "random is its baseline (--random)");
  expect_failure("--example-docs 0 --no-whole-split --no-random", "no module to measure");
  expect_failure("--baseline emo=" + model, "--baseline: emo=" + model + ": a model of that name is already given");
  expect_failure("--scratch emo=" + model, "names a model whose modules are measured");
  expect_failure("--example-docs 3", "--corpus: domain code: no document left to score after the 3 example(s)");
  expect_failure("--scratch k=" + (tmp / "nothing").string(), "nothing");
}

TEST_CASE("svg charts: a log y axis and round x ticks, as the pareto chart draws them", "[eval][pareto][svg]") {
  LineChart c;
  c.key = "k";
  c.log_y = true;
  c.round_x_ticks = true;
  c.series = {{"a", {5.41, 6.2, 7.79}, {50, 100, 200}}, {"b", {5.0, 7.0}, {300, 0}}};  // 0: not on a log axis
  const std::string svg = render_svg({c}, "t");
  auto cy_of = [&](const std::string& y) {
    size_t at = svg.find("data-y=\"" + y + "\"");
    REQUIRE(at != std::string::npos);
    size_t cy = svg.find("cy=\"", at) + 4;
    return std::stod(svg.substr(cy, svg.find('"', cy) - cy));
  };
  // Equal ratios, equal distances: 50 -> 100 -> 200.
  CHECK(cy_of("100") - cy_of("50") == Approx(cy_of("200") - cy_of("100")).epsilon(1e-3));
  CHECK(cy_of("300") < cy_of("200"));  // up is larger
  CHECK(svg.find("data-y=\"0\"") == std::string::npos);
  // 50..300 is less than a decade: 1-1.5-2-3-4-5-6-7-8 ticks.
  for (const char* tick : {">50<", ">60<", ">80<", ">100<", ">150<", ">200<", ">300<", ">5<", ">5.5<", ">8<"})
    CHECK(svg.find(tick) != std::string::npos);
  CHECK(svg.find(">400<") == std::string::npos);
  CHECK(svg.find(">5.41<") == std::string::npos);  // x ticks are round, not at the points
}

TEST_CASE("a pareto request from its fields: named models, fractions in one value or several", "[eval][pareto][bad-input]") {
  const auto& spec = pareto_request_spec();
  ParetoRequest r = build_request(spec, {{"model", {"out/emo"}},
                                         {"baseline", {"standard=out/std"}},
                                         {"scratch", {"out/moe-8", "dense=out/dense"}},
                                         {"keep-fraction", {"0.125,0.25", "0.5"}},
                                         {"no-random", {}},
                                         {"window", {"128"}},
                                         {"out", {"o"}}});
  CHECK(r.model.name == "emo");  // the default label
  CHECK(r.model.dir == "out/emo");
  REQUIRE(r.baselines.size() == 1);
  CHECK(r.baselines[0].name == "standard");
  REQUIRE(r.scratch.size() == 2);
  CHECK(r.scratch[0].name == "from scratch");  // a KIND-less model joins the default line
  CHECK(r.scratch[1].name == "dense");
  CHECK(r.fractions == std::vector<double>{0.125, 0.25, 0.5});
  CHECK_FALSE(r.random);
  CHECK(r.whole_split);
  CHECK(r.ppl.window == 128);
  CHECK(r.out == "o");
  CHECK(field_spec(spec.fields, "baseline").named_path);
  CHECK_FALSE(field_spec(spec.fields, "keep-fraction").check("0.25,x").empty());
  CHECK_THROWS_WITH(build_request(spec, {{"example-docs", {"-1"}}}), Catch::Contains("--example-docs"));
}
