// route, select and extract from the outside, and the module running with every command.
#include <catch2/catch.hpp>

#include "cli_util.h"
#include "core/io/json.h"
#include "core/io/svg_chart.h"

using namespace emo;
using namespace emo::test;

namespace {

struct Fixture {
  TempDir dir;
  std::string full, gsm8k;
  Fixture() {
    full = (dir / "full").string();
    gsm8k = (source_dir() / "data/gsm8k/train.jsonl").string();
    RunResult r = run_emo("init --preset tiny --seed 9 --out " + full);
    if (r.code != 0) throw std::runtime_error(r.err);
  }
  std::string path(const std::string& name) const { return (dir / name).string(); }
};

double max_diff(const Json& a, const Json& b) {
  double worst = 0;
  for (size_t t = 0; t < a.size(); ++t)
    for (size_t v = 0; v < a[t].size(); ++v) worst = std::max(worst, std::abs(a[t][v].get<double>() - b[t][v].get<double>()));
  return worst;
}

}  // namespace

TEST_CASE("route -> select -> extract, the module runs everywhere and equals the masked model", "[cli][surgery]") {
  Fixture f;
  Json route = json_of(run_emo("route --model " + f.full + " --data " + f.gsm8k + " --limit 1 --shots 8 --out " +
                               f.path("s.safetensors") + " --json"));
  CHECK(route["examples"] == 1);
  CHECK(route["tokens"].get<int>() > 500);  // 8 exemplars + the item
  json_of(run_emo("select --model " + f.full + " --stats " + f.path("s.safetensors") + " --keep 4 --out " +
                  f.path("e.json") + " --json"));
  Json viaStats = json_of(run_emo("extract --model " + f.full + " --stats " + f.path("s.safetensors") + " --keep 4 --out " +
                                  f.path("m1") + " --json"));
  Json viaData = json_of(run_emo("extract --model " + f.full + " --data " + f.gsm8k + " --limit 1 --shots 8 --keep 4 --out " +
                                 f.path("m2") + " --json"));
  Json viaFile = json_of(run_emo("extract --model " + f.full + " --experts " + f.path("e.json") + " --out " + f.path("m3") + " --json"));
  // Two tasks in one module (select): a report per task; --and-not keeps none of the other's own module.
  std::string corpus_file = (source_dir() / "data/corpus/valid.jsonl.gz").string();
  std::string two = "select --model " + f.full + " --stats math=" + f.path("s.safetensors") + " --data code=" + corpus_file +
                    " --domain code --limit 2 --keep 8 --json --out ";
  Json joint = json_of(run_emo(two + f.path("mc.json")));
  CHECK(joint["compose"] == "joint");
  CHECK(joint["tasks"]["math"]["own_module_kept"].get<double>() > 0);
  CHECK(joint["tasks"]["code"]["own_module_kept"].get<double>() > 0);
  Json without = json_of(run_emo(two + f.path("m-not-c.json") + " --and-not code"));
  CHECK(without["tasks"]["code"]["own_module_kept"].get<double>() == 0.0);
  CHECK(without["tasks"]["math"]["own_module_kept"].get<double>() >= joint["tasks"]["math"]["own_module_kept"].get<double>());
  // How many examples are enough: the curve's points in the report and in the SVG, the last
  // size's module written.
  Json stab = json_of(run_emo("select --model " + f.full + " --data " + f.gsm8k + " --limit 4 --keep 4 --stability "
                              "--threshold 1 --patience 5 --json --out " + f.path("stab.json")));
  const Json& points = stab["stability"]["points"];
  REQUIRE(points.size() == 3);  // 1, 2, 4 examples
  CHECK(points[2]["examples"] == 4);
  CHECK(points[0]["jaccard"].is_null());
  std::string svg = read_text_file(f.path("stab.stability.svg"));
  for (size_t i = 1; i < points.size(); ++i) {
    INFO(points[i].dump());
    CHECK(svg.find("data-y=\"" + exact_number(points[i]["jaccard"].get<double>()) + "\"") != std::string::npos);
  }
  CHECK(fs::exists(f.path("stab.json")));
  // A byte budget (the tiny model is 21.9 MB; top_k per layer takes 11.3 MB): the weight
  // files fit, and the layers keep different counts (EMO's configs can hold them).
  Json sized = json_of(run_emo("extract --model " + f.full + " --stats " + f.path("s.safetensors") +
                               " --max-bytes 14MB --out " + f.path("m5") + " --json"));
  CHECK(sized["weight_bytes"].get<uint64_t>() <= 14000000);
  CHECK(sized["weight_bytes"].get<uint64_t>() > 13500000);
  CHECK(sized["module"]["num_experts_per_layer"].is_array());
  // One selection, three routes to it: the same module bytes.
  CHECK(viaStats["content_hash"] == viaData["content_hash"]);
  CHECK(viaStats["content_hash"] == viaFile["content_hash"]);
  Json info = json_of(run_emo("inspect " + f.path("m1") + " --json"));
  CHECK(info["num_experts"] == 4);
  CHECK(info["top_k"] == 4);
  CHECK(info["provenance"]["command"] == "extract");
  // The module equals the full model restricted to its experts.
  Json mod = json_of(run_emo("logits --model " + f.path("m1") + " --ids 5,6,7,8,9 --json"));
  Json masked = json_of(run_emo("logits --model " + f.full + " --experts " + f.path("e.json") + " --ids 5,6,7,8,9 --json"));
  CHECK(max_diff(mod, masked) <= 1e-5);
  // It runs with generate and eval.
  RunResult gen = run_emo("generate --model " + f.path("m1") + " --prompt 'Question: 1+1?' --max-new-tokens 4");
  CHECK(gen.code == 0);
  std::string corpus = (source_dir() / "data/corpus/valid.jsonl.gz").string();
  Json ppl_m = json_of(run_emo("eval ppl --model " + f.path("m1") + " --data " + corpus + " --domain math --limit 3 --json"));
  Json ppl_e = json_of(run_emo("eval ppl --model " + f.full + " --experts " + f.path("e.json") + " --data " + corpus +
                               " --domain math --limit 3 --json"));
  CHECK(ppl_m["domains"]["math"]["loss"].get<double>() == Approx(ppl_e["domains"]["math"]["loss"].get<double>()).epsilon(1e-6));
  // A module of the module keeps the lineage back to the full model.
  Json nested = json_of(run_emo("extract --model " + f.path("m1") + " --method random --keep 2 --out " + f.path("m4") + " --json"));
  Json cfg = load_json_file(f.path("m4") + "/config.json");
  CHECK(cfg["emo_module"]["parent_hash"] == viaStats["content_hash"]);
  CHECK(cfg["emo_module"]["root_hash"] == viaStats["parent_hash"]);
  std::string prov = read_text_file(f.path("m4") + "/provenance.yaml");
  CHECK(prov.find(viaStats["content_hash"].get<std::string>()) != std::string::npos);  // parent
  CHECK(prov.find(viaStats["parent_hash"].get<std::string>()) != std::string::npos);   // grandparent, nested
}

TEST_CASE("surgery bad input: one line, non-zero exit, nothing written", "[cli][surgery][bad-input]") {
  Fixture f;
  std::string out = f.path("out");
  auto expect_failure = [&](const std::string& args, const std::string& fragment) {
    check_refused(args, run_emo(args), fragment, out);
  };
  std::string base = "extract --model " + f.full + " --out " + out + " ";
  expect_failure(base + "--data " + f.gsm8k + " --limit 1 --keep 40", "larger than the layer's 32 experts");
  expect_failure(base + "--data " + f.gsm8k + " --limit 1 --keep 0", "at least 1 expert");
  expect_failure(base + "--method best --keep 4", "unknown selection method");
  expect_failure(base + "--data " + f.gsm8k + " --limit 1 --max-bytes 1MB", "is below the smallest possible module");
  expect_failure(base + "--data " + f.gsm8k + " --limit 1 --max-bytes 8XB", "unknown unit 'XB'");
  expect_failure(base + "--data " + f.gsm8k + " --limit 1 --keep 4 --max-bytes 8GB", "exactly one of");
  write_file_atomic(f.path("bad.json"), R"({"0": [3, 3]})");
  expect_failure(base + "--experts " + f.path("bad.json"), "listed twice");
  write_file_atomic(f.path("bad2.json"), R"({"1": [2, 77]})");
  expect_failure(base + "--experts " + f.path("bad2.json"), "expert id 77 out of range");
  write_file_atomic(f.path("empty.jsonl"), "");
  expect_failure(base + "--data " + f.path("empty.jsonl") + " --keep 4", "no examples");
  // Several tasks (select): names, weights and the tasks left out are checked; an empty task is refused.
  std::string sel = "select --model " + f.full + " --out " + out + " --keep 4 --limit 1 ";
  std::string both = sel + "--data math=" + f.gsm8k + " --data code=" + f.gsm8k;
  expect_failure(both + " --weight math=0", "--weight: math=0: expected NAME=W with W a positive number");
  expect_failure(both + " --weight math=two", "expected NAME=W with W a positive number");
  expect_failure(both + " --and-not prose", "--and-not: prose: no task of this name");
  expect_failure(both + " --and-not math --and-not code", "every task is left out");
  expect_failure(sel + "--data math=" + f.gsm8k + " --data " + f.gsm8k, "name each one: NAME=FILE");
  expect_failure(sel + "--data math=" + f.gsm8k + " --data code=" + f.path("empty.jsonl"), "no examples");
  expect_failure(sel + "--data " + f.gsm8k + " --and-not code", "names a task");
  expect_failure(both + " --stability", "--stability: --data: routes growing numbers of one task's examples");
  expect_failure(sel + "--data " + f.gsm8k + " --stability --threshold 1.5", "--threshold: 1.5: must be in (0, 1]");
  // Statistics of another model.
  RunResult other = run_emo("init --preset tiny --seed 10 --out " + f.path("other"));
  REQUIRE(other.code == 0);
  REQUIRE(run_emo("route --model " + f.path("other") + " --data " + f.gsm8k + " --limit 1 --out " + f.path("o.safetensors")).code == 0);
  expect_failure(base + "--stats " + f.path("o.safetensors") + " --keep 4", "statistics were computed on model");
  // An existing output is refused, and replaced with --force.
  fs::create_directory(out);
  RunResult exists = run_emo(base + "--data " + f.gsm8k + " --limit 1 --keep 4");
  CHECK(exists.code != 0);
  CHECK(exists.err.find("output exists") != std::string::npos);
  CHECK(run_emo(base + "--data " + f.gsm8k + " --limit 1 --keep 4 --force").code == 0);
  CHECK(fs::exists(fs::path(out) / "config.json"));
}

TEST_CASE("examples longer than the context are truncated with a warning", "[cli][surgery]") {
  Fixture f;
  RunResult r = run_emo("route --model " + f.full + " --data " + f.gsm8k + " --limit 2 --shots 8 --max-length 64 --out " +
                        f.path("s.safetensors") + " --json");
  INFO(r.err);
  REQUIRE(r.code == 0);
  CHECK(r.err.find("2 example(s) longer than 64 tokens were truncated") != std::string::npos);
  CHECK(Json::parse(r.out)["tokens"] == 128);
}
