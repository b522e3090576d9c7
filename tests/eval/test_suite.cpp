// emo eval suite: one table of every evaluation, the full model and its modules side by
// side; each cell equals what the single-task command reports. Also the report helpers.
#include <catch2/catch.hpp>

#include <cmath>

#include "cli_util.h"
#include "core/checkpoint/experts.h"
#include "eval/eval_fixtures.h"
#include "eval/report.h"
#include "eval/suite.h"
#include "eval/suite_request.h"
#include "eval/sweep.h"
#include "eval/tasks.h"

using namespace emo;
using namespace emo::test;

TEST_CASE("wilson interval and tables", "[eval][report]") {
  // 8 of 10 at z = 1.96: center (0.8 + 0.19208) / 1.38416 = 0.71672,
  // half = 1.96 / 1.38416 * sqrt(0.016 + 0.00096040) = 0.22658 -> [0.49016, 0.94332].
  Interval a = wilson_interval(8, 10);
  CHECK(a.lo == Approx(0.4901624).epsilon(1e-5));
  CHECK(a.hi == Approx(0.9433178).epsilon(1e-5));
  Interval zero = wilson_interval(0, 20);
  CHECK(zero.lo == 0.0);
  CHECK(zero.hi == Approx(0.1611252).epsilon(1e-5));
  Interval all = wilson_interval(5, 5);
  CHECK(all.hi == 1.0);
  CHECK(all.lo == Approx(0.5655175).epsilon(1e-5));
  Interval none = wilson_interval(0, 0);
  CHECK(none.lo == 0.0);
  CHECK(none.hi == 1.0);
  Json j = accuracy_json(3, 4);
  CHECK(j["value"] == 0.75);
  CHECK(j["correct"] == 3);
  CHECK(j["total"] == 4);

  Table t;
  t.header = {"metric", "full", "math|code"};
  t.rows = {{"perplexity all", "12.345", "9.1"}, {"gsm8k °", "1", "22"}};
  CHECK(render_text(t) ==
        "metric            full  math|code\n"
        "perplexity all  12.345        9.1\n"
        "gsm8k °              1         22\n");
  CHECK(render_markdown(t) ==
        "| metric | full | math\\|code |\n"
        "| --- | ---: | ---: |\n"
        "| perplexity all | 12.345 | 9.1 |\n"
        "| gsm8k ° | 1 | 22 |\n");
  CHECK(fixed(1.23456, 2) == "1.23");
  CHECK(fixed(std::nan(""), 2) == "-");

  // The report formats are --format's choices, each rendering the same report.
  const Json report = {{"cells", {1, 2}}};
  std::vector<std::string> rendered;
  for (const auto& f : report_formats()) rendered.push_back(f.render(report, t));
  CHECK(rendered == std::vector<std::string>{render_text(t), render_markdown(t), report.dump(2) + "\n"});
  CHECK(field_spec(eval_suite_request_spec().fields, "format").choices ==
        std::vector<std::string>{"text", "markdown", "json"});
}

TEST_CASE("emo eval suite: full model, a module by experts file, a checkpoint, cells equal the single commands",
          "[eval][suite][cli]") {
  EvalModel& em = eval_model();
  TempDir tmp;
  ExpertSelection sel;
  sel.kept = {{0, {0, 2, 3}}, {1, {1, 4}}};
  sel.save((tmp / "math.json").string());
  const std::string model = em.dir.string(), experts = (tmp / "math.json").string();
  const std::string mc = (source_dir() / "tests/eval/data/mc_small.jsonl").string();
  // A small corpus of three domains (the shipped one has documents of thousands of tokens).
  const std::string corpus = (tmp / "corpus.jsonl").string();
  write_file_atomic(corpus,
                    "{\"id\": \"c1\", \"domain\": \"code\", \"text\": \"def add(a, b):\\n    return a + b\\n\"}\n"
                    "{\"id\": \"c2\", \"domain\": \"code\", \"text\": \"import os\\nprint(os.getcwd())\\n\"}\n"
                    "{\"id\": \"m1\", \"domain\": \"math\", \"text\": \"Question: 2 + 3?\\nAnswer: 5\"}\n"
                    "{\"id\": \"s1\", \"domain\": \"scripture\", \"text\": \"In the beginning was the Word.\"}\n");
  RunResult r =
      run_emo("eval suite --model " + model + " --modules " + experts + " " + model +
              " --names full math copy --corpus " + corpus + " --ppl-limit 1 --gsm8k-limit 3 --shots 1 --mc " + mc +
              " --mc-limit 4 --format json --out " + (tmp / "suite").string());
  INFO(r.err);
  REQUIRE(r.code == 0);
  Json j = Json::parse(r.out);
  REQUIRE(j["columns"].size() == 3);
  const Json& full = j["columns"][0];
  const Json& math = j["columns"][1];
  const Json& copy = j["columns"][2];
  CHECK(full["name"] == "full");
  CHECK(math["source"] == experts);
  CHECK(copy["source"] == model);
  // Three domains, at most one document each (--ppl-limit 1), plus "all".
  CHECK(full["ppl"].size() == 4);
  CHECK(full["ppl"]["all"]["documents"] == 3);
  CHECK(full["ppl"]["code"]["documents"] == 1);
  // The checkpoint column is the same model: the same numbers.
  CHECK(copy["gsm8k"]["bits_per_byte"]["bits_per_byte"].get<double>() ==
        Approx(full["gsm8k"]["bits_per_byte"]["bits_per_byte"].get<double>()).epsilon(1e-9));
  CHECK(copy["ppl"]["all"]["perplexity"].get<double>() ==
        Approx(full["ppl"]["all"]["perplexity"].get<double>()).epsilon(1e-9));
  // Each cell equals the single-task command, with and without the module's experts.
  for (const auto& [column, flag] :
       {std::pair<const Json*, std::string>{&full, ""}, {&math, " --experts " + experts}}) {
    INFO("column " << (*column)["name"]);
    RunResult g = run_emo("eval gsm8k --model " + model + " --limit 3 --shots 1 --json" + flag);
    REQUIRE(g.code == 0);
    CHECK((*column)["gsm8k"]["bits_per_byte"]["bits_per_byte"].get<double>() ==
          Approx(Json::parse(g.out)["bits_per_byte"].get<double>()).epsilon(1e-6));
  }
  RunResult m = run_emo("eval mc --model " + model + " --data " + mc + " --limit 4 --json --experts " + experts);
  REQUIRE(m.code == 0);
  CHECK(math["mc"]["mc_small"]["acc_per_char"] == Json::parse(m.out)["acc_per_char"]);
  RunResult p = run_emo("eval ppl --model " + model + " --data " + corpus +
                        " --domain code --limit 1 --json --experts " + experts);
  REQUIRE(p.code == 0);
  CHECK(math["ppl"]["code"]["perplexity"].get<double>() ==
        Approx(Json::parse(p.out)["domains"]["code"]["perplexity"].get<double>()).epsilon(1e-6));
  CHECK(std::abs(math["gsm8k"]["bits_per_byte"]["bits_per_byte"].get<double>() -
                 full["gsm8k"]["bits_per_byte"]["bits_per_byte"].get<double>()) > 1e-4);
  // The three renderings.
  CHECK(Json::parse(read_text_file(tmp / "suite/suite.json")) == j);
  std::string md = read_text_file(tmp / "suite/suite.md");
  CHECK(md.rfind("| metric | full | math | copy |\n| --- | ---: | ---: | ---: |\n", 0) == 0);
  CHECK(md.find("| gsm8k bits/byte |") != std::string::npos);
  CHECK(md.find("| mc_small acc_per_char % |") != std::string::npos);
  std::string txt = read_text_file(tmp / "suite/suite.txt");
  CHECK(txt.find("perplexity code") != std::string::npos);
  CHECK(txt.find("perplexity all") != std::string::npos);
  // Bad input.
  RunResult names = run_emo("eval suite --model " + model + " --modules " + experts + " --names a --no-ppl --no-gsm8k");
  CHECK(names.code != 0);
  CHECK(names.err.find("give 2 names") != std::string::npos);
  RunResult few = run_emo("eval suite --model " + model + " --no-ppl --no-gsm8k --mc " + mc + " --mc-fewshot a b");
  CHECK(few.code != 0);
  CHECK(few.err.find("one few-shot file per --mc file") != std::string::npos);
}

TEST_CASE("eval tasks are registry rows: the suite table and the sweep metrics are each task's, in order",
          "[eval][report]") {
  std::vector<std::string> names;
  for (const auto& t : eval_tasks()) {
    names.push_back(t.name);
    CHECK(std::string(t.description).size() > 10);
  }
  CHECK(names == std::vector<std::string>{"ppl", "gsm8k", "mc"});
  // Two records as run_suite writes them: one with every task, one with perplexity only.
  // Domains keep the order they were written in, "all" last.
  Json acc = {{"value", 0.5}, {"ci95", {0.25, 0.75}}};
  Json full = {{"ppl", {{"math", {{"perplexity", 12.0}}}, {"all", {{"perplexity", 20.0}}}, {"code", {{"perplexity", 30.0}}}}},
               {"gsm8k", {{"bits_per_byte", {{"bits_per_byte", 2.5}}}, {"generate", {{"accuracy", acc}, {"exact_match", acc}}}}},
               {"mc", {{"arc", {{"primary_metric", "acc_per_char"}, {"acc_per_char", acc}}}}},
               {"seconds", 3.0}};
  Json ppl_only = {{"ppl", {{"math", {{"perplexity", 11.0}}}, {"all", {{"perplexity", 19.0}}}}}, {"seconds", 1.0}};
  Table t = suite_table({"full", "module"}, {full, ppl_only});
  std::vector<std::vector<std::string>> want = {
      {"perplexity math", "12.000", "11.000"}, {"perplexity code", "30.000", "-"},
      {"perplexity all", "20.000", "19.000"}, {"gsm8k bits/byte", "2.5000", "-"},
      {"gsm8k accuracy %", "50.0 [25.0, 75.0]", "-"}, {"gsm8k exact match % (paper)", "50.0 [25.0, 75.0]", "-"},
      {"arc acc_per_char %", "50.0 [25.0, 75.0]", "-"}, {"seconds", "3.0", "1.0"}};
  CHECK(t.rows == want);
  std::vector<std::string> keys;
  for (const auto& m : sweep_metrics(full)) keys.push_back(m.key);
  CHECK(keys == std::vector<std::string>{"ppl/math", "ppl/code", "ppl/all", "gsm8k/bits_per_byte", "gsm8k/accuracy",
                                         "mc/arc/acc_per_char"});
}

TEST_CASE("suite and sweep requests from their fields: lists, joined budgets and tasks, checks before loading",
          "[eval][suite][sweep][bad-input]") {
  const auto& suite = eval_suite_request_spec();
  EvalSuiteRequest s = build_request(suite, {{"model", {"m"}},
                                             {"modules", {"math.json", "out/module"}},
                                             {"names", {"full", "math", "module"}},
                                             {"mc", {"arc.jsonl"}},
                                             {"pool", {"16"}},
                                             {"no-gsm8k", {}},
                                             {"format", {"markdown"}}});
  CHECK(s.modules == std::vector<std::string>{"math.json", "out/module"});
  CHECK(s.data.mc == std::vector<std::string>{"arc.jsonl"});
  CHECK(s.data.pool == 16);
  CHECK(s.data.ppl_limit == 20);  // the suite's default
  CHECK(s.no_gsm8k);
  CHECK(s.format == "markdown");
  s.names.pop_back();  // three columns, two names: refused before any model loads
  CHECK_THROWS_WITH(run_eval_suite(s), Catch::Contains("--names"));

  const auto& sweep = eval_sweep_request_spec();
  EvalSweepRequest w = build_request(sweep, {{"model", {"m"}},
                                             {"data", {"g.jsonl"}},
                                             {"keep", {"8,16", "32"}},
                                             {"tasks", {"ppl,gsm8k-generate"}},
                                             {"random", {}},
                                             {"gsm8k-shots", {"4"}}});
  CHECK(w.sweep.keep == std::vector<int64_t>{8, 16, 32});
  CHECK(w.tasks == std::vector<std::string>{"ppl", "gsm8k-generate"});
  CHECK(w.sweep.random_baseline);
  CHECK(w.data.shots == 4);
  CHECK(w.examples.source.path == "g.jsonl");
  CHECK(field_spec(sweep.fields, "keep").delimiter == ',');
  CHECK_FALSE(field_spec(sweep.fields, "keep").check("8x").empty());
  CHECK(field_spec(sweep.fields, "keep").check("4,8,16").empty());  // a recipe may join them in one value
  CHECK_THAT(field_spec(sweep.fields, "batch").help, Catch::Contains("routing"));  // the shared row, said for a sweep
  CHECK_THROWS_WITH(build_request(sweep, {{"keep", {"8,x"}}}), Catch::Contains("--keep"));
}
