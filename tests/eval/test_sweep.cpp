// emo eval sweep: a module per budget evaluated masked, with a random baseline, written
// as sweep.json / sweep.md / sweep.svg. The chart is read back as XML (python3's
// xml.etree: the project has no XML library) and must carry exactly the points of
// sweep.json; the all-experts budget is the full model, bit for bit; a masked point is
// what `emo extract` of its experts reports. Also the chart helpers and bad input.
#include <catch2/catch.hpp>
#include <cmath>
#include <fstream>
#include <set>

#include "cli_util.h"
#include "core/checkpoint/experts.h"
#include "core/checkpoint/summary.h"
#include "eval/eval_fixtures.h"
#include "core/io/svg_chart.h"
#include "eval/sweep.h"

using namespace emo;
using namespace emo::test;

namespace {

// Four documents, one per domain but code (two): with --ppl-limit 2 the sweep and
// `emo eval ppl` read the same documents.
void write_corpus(const fs::path& file) {
  write_file_atomic(file,
                    "{\"id\": \"c1\", \"domain\": \"code\", \"text\": \"def add(a, b):\\n    return a + b\\n\"}\n"
                    "{\"id\": \"c2\", \"domain\": \"code\", \"text\": \"import os\\nprint(os.getcwd())\\n\"}\n"
                    "{\"id\": \"m1\", \"domain\": \"math\", \"text\": \"Question: 2 + 3?\\nAnswer: 5\"}\n"
                    "{\"id\": \"s1\", \"domain\": \"scripture\", \"text\": \"In the beginning was the Word.\"}\n");
}

// The first n lines of the shipped GSM8K train file.
void write_gsm8k(const fs::path& file, size_t n) {
  std::ifstream in(data_dir() / "gsm8k/train.jsonl");
  std::string text, line;
  for (size_t i = 0; i < n && std::getline(in, line); ++i) text += line + "\n";
  write_file_atomic(file, text);
}

// The circles of class "point", the charts and the legend texts of an SVG file, read by
// python3's XML parser (which rejects a document that is not well-formed).
Json read_svg(const fs::path& svg, const TempDir& tmp) {
  write_file_atomic(tmp / "read_svg.py", R"(import json, sys
import xml.etree.ElementTree as ET
ns = "{http://www.w3.org/2000/svg}"
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == ns + "svg", root.tag
points = [{"chart": c.get("data-chart"), "series": c.get("data-series"), "x": c.get("data-x"), "y": c.get("data-y")}
          for c in root.iter(ns + "circle") if c.get("class") == "point"]
charts = [g.get("data-chart") for g in root.iter(ns + "g") if g.get("class") == "chart"]
legend = [t.text for g in root.iter(ns + "g") if g.get("class") == "legend" for t in g.iter(ns + "text")]
texts = [t.text for t in root.iter(ns + "text")]
refs = [l.get("data-y") for l in root.iter(ns + "line") if l.get("class") == "reference"]
print(json.dumps({"title": root.find(ns + "title").text, "points": points, "charts": charts, "legend": legend,
                  "texts": texts, "references": refs}))
)");
  TempDir out;
  int rc = std::system(("python3 " + (tmp / "read_svg.py").string() + " " + svg.string() + " > " +
                        (out / "svg.json").string() + " 2> " + (out / "err").string())
                           .c_str());
  INFO(read_text_file(out / "err"));
  REQUIRE(rc == 0);
  return Json::parse(read_text_file(out / "svg.json"));
}

const Json& point_at(const Json& sweep, const std::string& series, int64_t keep) {
  for (const auto& p : sweep["points"])
    if (p["series"] == series && p["keep"] == keep) return p;
  FAIL("no point " << series << " keep " << keep);
  throw;
}

}  // namespace

TEST_CASE("svg charts: nice ticks, escaping, well-formed XML with every finite point", "[eval][sweep][svg]") {
  CHECK(nice_ticks(0.3, 4.2) == std::vector<double>{0, 1, 2, 3, 4, 5});
  std::vector<double> small = nice_ticks(4.71, 4.77);  // steps of 0.02 from 4.70 to 4.78
  REQUIRE(small.size() == 5);
  CHECK(small.front() == Approx(4.70));
  CHECK(small.back() == Approx(4.78));
  std::vector<double> big = nice_ticks(7800, 8100);
  CHECK(big.front() == 7800);
  CHECK(big.back() == 8100);
  CHECK(xml_escape("a<b & \"c\" > 'd'") == "a&lt;b &amp; &quot;c&quot; &gt; &apos;d&apos;");
  LineChart c;
  c.key = "k<&>";
  c.title = "perplexity <all> & \"more\"";
  c.x_label = "experts";
  c.y_label = "ppl";
  c.log2_x = true;
  c.series = {{"router-prob", {2, 4, 8}, {30.5, 20.25, 10.125}}, {"random", {2, 4, 8}, {40, NAN, 10.125}}};
  c.references = {{"full model (8)", 10.125}};
  c.x_notes = {{2, "1.2 MB"}, {8, "2 MB"}};
  TempDir tmp;
  write_file_atomic(tmp / "c.svg", render_svg({c, c}, "two & <panels>"));
  Json svg = read_svg(tmp / "c.svg", tmp);
  CHECK(svg["title"] == "two & <panels>");
  CHECK(svg["charts"] == Json::array({"k<&>", "k<&>"}));
  // The NaN point is left out; the others keep their exact values.
  REQUIRE(svg["points"].size() == 10);
  CHECK(svg["points"][0]["series"] == "router-prob");
  CHECK(std::stod(svg["points"][2]["y"].get<std::string>()) == 10.125);
  CHECK(svg["points"][4]["x"] == "8");
  CHECK(svg["legend"] ==
        Json::array({"router-prob", "random", "full model (8)", "router-prob", "random", "full model (8)"}));
  std::set<std::string> texts;
  for (const auto& t : svg["texts"])
    if (t.is_string()) texts.insert(t.get<std::string>());
  for (const char* want : {"2", "4", "8", "1.2 MB", "experts", "ppl", "perplexity <all> & \"more\""})
    CHECK(texts.count(want) == 1);
}

TEST_CASE("module_param_count: the full selection is the whole model, a module counts its rows", "[eval][sweep]") {
  EvalModel& em = eval_model();
  const ModelConfig& c = em.model->config();
  CHECK(module_param_count(c, {}) == count_params(c).total);
  ExpertSelection sel;
  sel.kept = {{0, {1, 5}}, {1, {0, 2, 3}}};
  // Per dropped routed expert: its three H x I projections and its router row.
  const uint64_t per_expert = 3 * uint64_t(c.hidden_size * c.intermediate_size) + uint64_t(c.hidden_size);
  CHECK(module_param_count(c, sel) == count_params(c).total - (5 + 4) * per_expert);
}

TEST_CASE("emo eval sweep: json, md and svg, full budget == full model, masked point == extracted module",
          "[eval][sweep][cli]") {
  EvalModel& em = eval_model();  // micro: 2 MoE layers of 8 experts (7 routed + 1 shared), top-3
  TempDir tmp;
  const std::string model = em.dir.string(), corpus = (tmp / "corpus.jsonl").string(),
                    gsm = (tmp / "gsm8k.jsonl").string(), out = (tmp / "sweep").string();
  write_corpus(corpus);
  write_gsm8k(gsm, 3);
  RunResult r =
      run_emo("eval sweep --model " + model + " --data " + (data_dir() / "gsm8k/train.jsonl").string() +
              " --limit 1 --method router-prob --keep 8,2,4 --random --seed 3 --tasks ppl,gsm8k --ppl-data " + corpus +
              " --ppl-limit 2 --gsm8k-data " + gsm + " --gsm8k-shots 1 --batch 4 --json -v --out " + out);
  Json j = json_of(r);
  CHECK(r.err.find("eval sweep [7/7]: random, keep 8") != std::string::npos);
  CHECK(Json::parse(read_text_file(fs::path(out) / "sweep.json")) == j);
  CHECK(j["task"] == "sweep");
  CHECK(j["method"] == "router-prob");
  CHECK(j["budgets"] == Json::array({2, 4, 8}));
  CHECK(j["storage_dtype"] == "F32");
  CHECK(j["examples"]["format"] == "gsm8k");
  const Json& full = j["full"];
  const std::vector<std::string> keys = {"ppl/code", "ppl/math", "ppl/scripture", "ppl/all", "gsm8k/bits_per_byte"};
  REQUIRE(j["metrics"].size() == keys.size());
  for (size_t i = 0; i < keys.size(); ++i) CHECK(j["metrics"][i]["key"] == keys[i]);
  CHECK(full["keep"] == 8);
  CHECK(full["params"] == count_params(em.model->config()).total);
  CHECK(full["bytes"] == 4 * full["params"].get<uint64_t>());

  // Every point: its budget, routed experts per layer, top-k and size.
  REQUIRE(j["points"].size() == 6);
  for (const auto& p : j["points"]) {
    INFO(p["series"] << " keep " << p["keep"]);
    const int64_t keep = p["keep"];
    CHECK(p["module_top_k"] == std::min<int64_t>(keep, 3));
    for (const auto& layer : {"0", "1"}) CHECK(p["experts"][layer].size() == size_t(keep - 1));
    CHECK(p["metrics"].size() == keys.size());
    CHECK(p["bytes"] == 4 * p["params"].get<uint64_t>());
  }
  CHECK(j["points"][0]["series"] == "router-prob");
  CHECK(j["points"][1]["series"] == "random");
  CHECK(point_at(j, "router-prob", 2)["params"] < point_at(j, "router-prob", 4)["params"]);

  // Keeping every expert is the full model: the same numbers, exactly (an allow-list of
  // all experts masks nothing), and the same as the single commands report.
  for (const char* series : {"router-prob", "random"}) {
    CHECK(point_at(j, series, 8)["metrics"] == full["metrics"]);
    CHECK(point_at(j, series, 8)["params"] == full["params"]);
  }
  Json ppl = json_of(run_emo("eval ppl --model " + model + " --data " + corpus + " --batch 4 --json"));
  Json bpb = json_of(run_emo("eval gsm8k --model " + model + " --data " + gsm + " --shots 1 --batch 4 --json"));
  CHECK(full["metrics"]["ppl/all"] == ppl["domains"]["all"]["perplexity"]);
  CHECK(full["metrics"]["ppl/code"] == ppl["domains"]["code"]["perplexity"]);
  CHECK(full["metrics"]["gsm8k/bits_per_byte"] == bpb["bits_per_byte"]);

  // A masked point computes what the extracted module computes. Not bit for bit: the
  // module's router has only the kept rows, so its softmax sums fewer terms (the masked
  // model's extra terms are exp(-inf) = 0) in another order, hence 1e-6 relative.
  const Json& point = point_at(j, "router-prob", 4);
  write_file_atomic(tmp / "module.json", point["experts"].dump());
  const std::string module = (tmp / "module").string();
  json_of(run_emo("extract --model " + model + " --experts " + (tmp / "module.json").string() + " --out " + module +
                  " --json"));
  Json mppl = json_of(run_emo("eval ppl --model " + module + " --data " + corpus + " --batch 4 --json"));
  Json mbpb = json_of(run_emo("eval gsm8k --model " + module + " --data " + gsm + " --shots 1 --batch 4 --json"));
  for (const char* domain : {"code", "math", "scripture", "all"})
    CHECK(rel(point["metrics"]["ppl/" + std::string(domain)].get<double>(),
              mppl["domains"][domain]["perplexity"].get<double>()) <= 1e-6);
  CHECK(rel(point["metrics"]["gsm8k/bits_per_byte"].get<double>(), mbpb["bits_per_byte"].get<double>()) <= 1e-6);
  CHECK(point["metrics"]["gsm8k/bits_per_byte"] != full["metrics"]["gsm8k/bits_per_byte"]);
  // Its memory is the extracted module's weight bytes.
  Json info = json_of(run_emo("inspect " + module + " --json"));
  uint64_t module_bytes = 0;
  for (const auto& [dtype, n] : info["bytes_by_dtype"].items()) module_bytes += n.get<uint64_t>();
  CHECK(point["bytes"] == module_bytes);
  CHECK(point["params"] == info["params"]["total"]);

  // The table: one row per point and the full model.
  std::string md = read_text_file(fs::path(out) / "sweep.md");
  CHECK(md.find("| series | experts | top-k | params | memory | perplexity code | perplexity math | perplexity "
                "scripture | perplexity all | gsm8k bits/byte |") != std::string::npos);
  CHECK(md.find("| router-prob | 2 | 2 |") != std::string::npos);
  CHECK(md.find("| random | 4 | 3 |") != std::string::npos);
  CHECK(md.find("| full | 8 | - |") != std::string::npos);
  CHECK(md.find("![quality vs experts kept](sweep.svg)") != std::string::npos);

  // The chart: one panel per metric, every point of sweep.json with its exact value, the
  // full model as the reference line, a legend naming the series.
  Json svg = read_svg(fs::path(out) / "sweep.svg", tmp);
  CHECK(svg["charts"] == Json(keys));
  REQUIRE(svg["points"].size() == j["points"].size() * keys.size());
  std::set<std::string> seen;
  for (const auto& c : svg["points"]) {
    const std::string key = c["chart"], series = c["series"];
    const double x = std::stod(c["x"].get<std::string>()), y = std::stod(c["y"].get<std::string>());
    INFO(key << " " << series << " " << x);
    CHECK(y == point_at(j, series, int64_t(x))["metrics"][key].get<double>());
    seen.insert(key + "|" + series + "|" + c["x"].get<std::string>());
  }
  CHECK(seen.size() == svg["points"].size());
  REQUIRE(svg["references"].size() == keys.size());
  for (size_t i = 0; i < keys.size(); ++i)
    CHECK(std::stod(svg["references"][i].get<std::string>()) == full["metrics"][keys[i]].get<double>());
  CHECK(svg["legend"][0] == "router-prob");
  CHECK(svg["legend"][1] == "random");
  CHECK(svg["legend"][2] == "full model (8)");

  // The text table, and --out refused when it exists.
  RunResult again = run_emo("eval sweep --model " + model + " --method random --keep 2 --tasks gsm8k --gsm8k-data " +
                            gsm + " --gsm8k-shots 0 --out " + out);
  CHECK(again.code != 0);
  CHECK(again.err.find("exists") != std::string::npos);
  RunResult text = run_emo("eval sweep --model " + model + " --method random --keep 2 --tasks gsm8k --gsm8k-data " +
                           gsm + " --gsm8k-shots 0 --out " + out + " --force");
  INFO(text.err);
  REQUIRE(text.code == 0);
  CHECK(text.out.find("gsm8k bits/byte") != std::string::npos);
  CHECK(text.out.find("random") != std::string::npos);
}

TEST_CASE("emo eval sweep --help says what it writes", "[eval][sweep][cli]") {
  RunResult r = run_emo("eval sweep --help");
  REQUIRE(r.code == 0);
  for (const char* want : {"Writes --out/sweep.json", "--out/sweep.md", "--out/sweep.svg", "Example", "--keep",
                           "--random", "--tasks", "--ppl-data", "--gsm8k-data", "--limit"})
    CHECK(r.out.find(want) != std::string::npos);
}

TEST_CASE("emo eval sweep: bad input is one line, a non-zero exit, nothing written", "[eval][sweep][cli][bad-input]") {
  EvalModel& em = eval_model();
  TempDir tmp;
  const std::string gsm = (tmp / "gsm8k.jsonl").string(), out = (tmp / "out").string();
  write_gsm8k(gsm, 2);
  // The command without --keep and the task flags, and the usual task flags.
  const std::string base = "eval sweep --model " + em.dir.string() + " --data " + gsm + " --limit 1 --out " + out + " ";
  const std::string gsm_task = " --tasks gsm8k --gsm8k-data " + gsm + " --gsm8k-shots 0";
  auto expect_failure = [&](const std::string& args, const std::string& fragment) {
    check_refused(args, run_emo(base + args), fragment, out);
  };
  expect_failure("--keep 2,16" + gsm_task, "keep 16 is larger than the layer's 8 experts");
  expect_failure("--keep 1,4" + gsm_task, "keep 1 counts the 1 shared expert(s) and leaves no routed expert");
  expect_failure("--keep 0" + gsm_task, "must keep at least 1 expert");
  expect_failure("--keep 4,2,4" + gsm_task, "--keep: 4: budget listed twice");
  expect_failure("--keep 2 --method explicit" + gsm_task, "explicit lists one module");
  expect_failure("--keep 2 --method random --random" + gsm_task, "already the random baseline");
  expect_failure("--keep 2 --method best" + gsm_task, "unknown selection method");
  expect_failure("--keep 2 --tasks mc", "give the multiple-choice files with --mc");
  expect_failure("--keep 2 --tasks gsm8k --gsm8k-data " + gsm + " --gsm8k-shots 9",
                 "--gsm8k-shots: 9: more shots than the 8 STD:GSM8k exemplars");
  write_file_atomic(tmp / "bad.jsonl", "{\"question\": \"q\"}\n");
  expect_failure("--keep 2 --tasks gsm8k --gsm8k-data " + (tmp / "bad.jsonl").string(),
                 "bad.jsonl: line 1: missing key \"answer\"");
  write_file_atomic(tmp / "empty.jsonl", "");
  expect_failure("--keep 2 --tasks ppl --ppl-data " + (tmp / "empty.jsonl").string(), "empty.jsonl: no documents");
  // Flags CLI11 rejects (its usage error, a non-zero exit).
  for (const std::string& args : {"--keep 2,x" + gsm_task, std::string("--keep 2 --tasks bpb")}) {
    RunResult r = run_emo(base + args);
    INFO(args << "\n" << r.err);
    CHECK(r.code != 0);
    CHECK(r.err.find(args.find("bpb") != std::string::npos ? "--tasks" : "--keep") != std::string::npos);
    CHECK_FALSE(fs::exists(out));
  }
  // The selection examples: required by a method that reads statistics, and not empty.
  const std::string no_examples = "eval sweep --model " + em.dir.string() + " --keep 2 --tasks gsm8k --gsm8k-data " +
                                  gsm + " --gsm8k-shots 0 --out " + out;
  for (const auto& [args, fragment] : {std::pair<std::string, std::string>{"", "give the task examples with --data"},
                                       {" --data " + (tmp / "empty.jsonl").string(), "no examples"}}) {
    RunResult r = run_emo(no_examples + args);
    INFO(args << "\n" << r.err);
    CHECK(r.code != 0);
    CHECK(r.err.find(fragment) != std::string::npos);
    CHECK(count_lines(r.err) == 1);
    CHECK_FALSE(fs::exists(out));
  }
}
