// emo run / lineage / verify from the outside, with the real commands as steps:
// extract -> finetune -> merge -> eval on a micro model.
#include <catch2/catch.hpp>

#include <fstream>
#include <regex>

#include "cli_util.h"
#include "core/io/json.h"
#include "core/checkpoint/provenance.h"
#include "core/io/safetensors.h"

using namespace emo;
using namespace emo::test;

namespace {

std::string pipeline_recipe(const fs::path& base, const fs::path& experts) {
  return "name: pipeline\n"
         "inputs:\n"
         "  base: " + base.string() + "\n"
         "  experts: " + experts.string() + "\n"
         "  corpus: ${emo.data}/corpus/train.jsonl.gz\n"
         "steps:\n"
         "  - id: module\n"
         "    command: extract\n"
         "    with: {model: \"${inputs.base}\", experts: \"${inputs.experts}\"}\n"
         "  - id: tuned\n"
         "    command: finetune\n"
         "    with:\n"
         "      model: ${steps.module.out}\n"
         "      data: ${inputs.corpus}\n"
         "      format: text\n"
         "      domain: math\n"
         "      limit: 8\n"
         "      seq-len: 64\n"
         "      batch-size: 2\n"
         "      max-steps: 2\n"
         "      lr: 1e-2\n"
         "      train: routed\n"
         "  - id: merge\n"
         "    command: merge\n"
         "    with: {base: \"${inputs.base}\", module: \"${steps.tuned.out}\"}\n"
         "  - id: score\n"
         "    command: eval ppl\n"
         "    with: {model: \"${steps.merge.out}\", data: \"${emo.data}/corpus/valid.jsonl.gz\", limit: 2, window: 32}\n"
         "outputs:\n"
         "  merged: ${steps.merge.out}\n"
         "  score: {from: \"${steps.score.out}\"}\n";
}

std::vector<std::string> states(const Json& report) {
  std::vector<std::string> s;
  for (const auto& e : report["steps"]) s.push_back(e["state"].get<std::string>());
  return s;
}

// Flips one bit in the middle of a tensor's bytes (not the header).
void flip_tensor_byte(const fs::path& file, const std::string& tensor) {
  uint64_t at = 0;
  {
    auto st = SafetensorsFile::open(file.string());
    const TensorInfo* info = st->find(tensor);
    REQUIRE(info);
    at = st->data_offset() + info->begin + info->nbytes() / 2;
  }
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(std::streamoff(at));
  char c = 0;
  f.read(&c, 1);
  c ^= 0x10;
  f.seekp(std::streamoff(at));
  f.write(&c, 1);
}

}  // namespace

TEST_CASE("emo run: a pipeline runs, a second run reuses every step, one setting re-runs its step and descendants",
          "[cli][recipes]") {
  TempDir tmp;
  fs::path base = tmp / "base", experts = tmp / "experts.json", recipe = tmp / "pipeline.yaml";
  REQUIRE(run_emo("init --preset micro --seed 3 --out " + base.string()).code == 0);
  write_file_atomic(experts, R"({"0": [0, 1], "1": [2, 3]})");
  write_file_atomic(recipe, pipeline_recipe(base, experts));
  std::string run = "run " + recipe.string() + " --workdir " + (tmp / "work").string() + " --json";

  RunResult first = run_emo(run);
  INFO(first.err);
  REQUIRE(first.code == 0);
  CHECK(states(Json::parse(first.out)) == std::vector<std::string>{"ran", "ran", "ran", "ran"});
  CHECK(fs::exists(tmp / "work/score/ppl.json"));
  CHECK(fs::exists(tmp / "work/run.jsonl"));
  // The merge and extract steps build their commands' requests from their settings (no
  // command line parsed): the same models as the commands, and provenance recording the
  // equivalent command line.
  RunResult by_hand = run_emo("merge --base " + base.string() + " --module " + (tmp / "work/tuned").string() +
                              " --out " + (tmp / "by-hand").string());
  REQUIRE(by_hand.code == 0);
  auto step = Provenance::load(tmp / "work/merge");
  REQUIRE(step);
  CHECK(step->output_hash == Provenance::load(tmp / "by-hand")->output_hash);
  CHECK(step->command_line == "emo merge --base=" + base.string() + " --module=" + (tmp / "work/tuned").string() +
                                  " --out=" + (tmp / "work/merge").string());

  RunResult module_by_hand = run_emo("extract --model " + base.string() + " --experts " + experts.string() + " --out " +
                                     (tmp / "module-by-hand").string());
  REQUIRE(module_by_hand.code == 0);
  auto module_step = Provenance::load(tmp / "work/module");
  REQUIRE(module_step);
  CHECK(module_step->output_hash == Provenance::load(tmp / "module-by-hand")->output_hash);
  CHECK(module_step->command_line == "emo extract --model=" + base.string() + " --experts=" + experts.string() +
                                         " --out=" + (tmp / "work/module").string());

  RunResult second = run_emo(run);
  REQUIRE(second.code == 0);
  CHECK(states(Json::parse(second.out)) == std::vector<std::string>{"cached", "cached", "cached", "cached"});
  RunResult text = run_emo("run " + recipe.string() + " --workdir " + (tmp / "work").string());
  CHECK(text.out.find("every step was cached: nothing ran") != std::string::npos);

  // The dry run of a change says what would run; the run does exactly that.
  RunResult plan = run_emo(run + " --dry-run --set tuned.lr=2e-2");
  REQUIRE(plan.code == 0);
  CHECK(states(Json::parse(plan.out)) == std::vector<std::string>{"cached", "will run", "will run", "will run"});
  RunResult changed = run_emo(run + " --set tuned.lr=2e-2");
  INFO(changed.err);
  REQUIRE(changed.code == 0);
  CHECK(states(Json::parse(changed.out)) == std::vector<std::string>{"cached", "ran", "ran", "ran"});
  // Changing only the evaluation leaves the models alone.
  RunResult eval_only = run_emo(run + " --set tuned.lr=2e-2 --set score.limit=1");
  CHECK(states(Json::parse(eval_only.out)) == std::vector<std::string>{"cached", "cached", "cached", "ran"});
}

TEST_CASE("emo lineage follows the merged model to its roots, emo verify finds a flipped byte", "[cli][recipes]") {
  TempDir tmp;
  fs::path base = tmp / "base", experts = tmp / "experts.json", recipe = tmp / "pipeline.yaml";
  REQUIRE(run_emo("init --preset micro --seed 3 --out " + base.string()).code == 0);
  write_file_atomic(experts, R"({"0": [0, 1], "1": [2, 3]})");
  write_file_atomic(recipe, pipeline_recipe(base, experts));
  REQUIRE(run_emo("run " + recipe.string() + " --workdir " + (tmp / "work").string() + " --only merge").code != 0);
  RunResult r = run_emo("run " + recipe.string() + " --workdir " + (tmp / "work").string());
  INFO(r.err);
  REQUIRE(r.code == 0);

  RunResult lineage = run_emo("lineage " + (tmp / "work/merge").string());
  INFO(lineage.out);
  REQUIRE(lineage.code == 0);
  // merge <- base (init) and tuned (finetune) <- module (extract) <- base and the experts file.
  CHECK(lineage.out.find("merge  ") == 0);
  CHECK(lineage.out.find("[pipeline/merge]") != std::string::npos);
  CHECK(lineage.out.find("base: init") != std::string::npos);
  CHECK(lineage.out.find("module: finetune") != std::string::npos);
  CHECK(lineage.out.find("[pipeline/tuned]") != std::string::npos);
  CHECK(lineage.out.find("model: extract") != std::string::npos);
  CHECK(lineage.out.find("[pipeline/module]") != std::string::npos);
  CHECK(lineage.out.find("experts: (root)") != std::string::npos);
  CHECK(lineage.out.find("data: (root)") != std::string::npos);
  Json tree = Json::parse(run_emo("lineage " + (tmp / "work/merge").string() + " --json").out);
  CHECK(tree["command"] == "merge");
  CHECK(tree["inputs"].size() == 2);

  for (const char* step : {"module", "tuned", "merge", "score"}) {
    RunResult ok = run_emo("verify " + (tmp / "work" / step).string());
    INFO(step << ": " << ok.err);
    CHECK(ok.code == 0);
  }
  flip_tensor_byte(tmp / "work/merge/model.safetensors", "model.layers.1.self_attn.q_proj.weight");
  RunResult bad = run_emo("verify " + (tmp / "work/merge").string());
  CHECK(bad.code == 1);
  CHECK(count_lines(bad.err) == 1);
  CHECK(bad.err.find("output_hash: provenance records sha256:") != std::string::npos);
  CHECK(bad.err.find("(edited or corrupted)") != std::string::npos);
  flip_tensor_byte(tmp / "work/module/model.safetensors", "model.embed_tokens.weight");
  CHECK(run_emo("verify " + (tmp / "work/module").string()).code == 1);
}

TEST_CASE("emo run: recipe errors are one line with file:line:col, and nothing runs", "[cli][recipes][bad-input]") {
  TempDir tmp;
  fs::path recipe = tmp / "bad.yaml";
  write_file_atomic(recipe, "name: bad\nsteps:\n  - id: a\n    command: extract\n    with: {model: ., kep: 4}\n");
  RunResult r = run_emo("run " + recipe.string() + " --workdir " + (tmp / "work").string());
  CHECK(r.code == 1);
  CHECK(count_lines(r.err) == 1);
  CHECK(r.err.find("bad.yaml:5:22: steps[0] (a).with.kep: `extract` has no setting \"kep\"") != std::string::npos);
  CHECK_FALSE(fs::exists(tmp / "work"));
  write_file_atomic(recipe, "name: bad\nsteps:\n  - id: a\n    command: merge\n    with: {base: ., module: ., mode: sum}\n");
  r = run_emo("run " + recipe.string());
  CHECK(r.err.find("bad.yaml:5:38: steps[0] (a).with.mode: \"sum\" is not one of: replace, average") !=
        std::string::npos);
  // A value the command's own flag check refuses (a size) is refused by the recipe too.
  write_file_atomic(recipe, "name: bad\nsteps:\n  - id: a\n    command: extract\n    with: {model: ., max-bytes: 8XB}\n");
  r = run_emo("run " + recipe.string() + " --workdir " + (tmp / "work").string());
  CHECK(count_lines(r.err) == 1);
  CHECK(r.err.find("bad.yaml:5:33: steps[0] (a).with.max-bytes: 8XB: unknown unit 'XB'") != std::string::npos);
  CHECK_FALSE(fs::exists(tmp / "work"));
}

TEST_CASE("emo run: select composes named tasks from steps and files, and checks their names and paths",
          "[cli][recipes]") {
  TempDir tmp;
  REQUIRE(run_emo("init --preset micro --seed 3 --out " + (tmp / "m").string()).code == 0);
  const std::string gsm8k = (source_dir() / "data/gsm8k/train.jsonl").string();
  auto recipe = [&](const std::string& select_with) {
    return "name: tasks\ninputs:\n  base: " + (tmp / "m").string() +
           "\nsteps:\n"
           "  - id: route-math\n    command: route\n    with: {model: \"${inputs.base}\", data: " + gsm8k + ", limit: 2}\n"
           "  - id: both\n    command: select\n    with: {model: \"${inputs.base}\", keep: 4, " + select_with + "}\n";
  };
  fs::path file = tmp / "tasks.yaml";
  write_file_atomic(file, recipe("stats: [\"math=${steps.route-math.out}\"], data: [code=" + gsm8k +
                                 "], weight: [math=2], skip: 5, limit: 2"));
  RunResult ok = run_emo("run " + file.string() + " --workdir " + (tmp / "w").string());
  INFO(ok.err);
  REQUIRE(ok.code == 0);
  Json experts = load_json_file((tmp / "w/both/experts.json").string());
  CHECK(experts.size() == 2);  // micro: two MoE layers
  // A named path that does not exist, and a weight that is not a positive number, are refused
  // before anything runs.
  write_file_atomic(file, recipe("data: [math=" + (tmp / "nope.jsonl").string() + ", code=" + gsm8k + "]"));
  RunResult missing = run_emo("run " + file.string() + " --workdir " + (tmp / "w2").string());
  CHECK(count_lines(missing.err) == 1);
  CHECK(missing.err.find("with.data: no such file or directory: " + (tmp / "nope.jsonl").string()) != std::string::npos);
  write_file_atomic(file, recipe("data: [math=" + gsm8k + ", code=" + gsm8k + "], weight: [math=-1]"));
  RunResult weight = run_emo("run " + file.string() + " --workdir " + (tmp / "w2").string());
  CHECK(weight.err.find("with.weight: math=-1: expected NAME=W with W a positive number") != std::string::npos);
  CHECK_FALSE(fs::exists(tmp / "w2"));
}

TEST_CASE("the shipped recipes validate, and docs/recipes.md carries the current reference", "[cli][recipes]") {
  // Every recipe in recipes/ (a new one is covered without being listed here).
  size_t shipped = 0;
  for (const auto& entry : fs::directory_iterator(source_dir() / "recipes")) {
    const fs::path& file = entry.path();
    if (file.extension() != ".yaml" || file.stem() == "emo-1b14b-gsm8k") continue;
    RunResult r = run_emo("run " + file.string() + " --dry-run --workdir " +
                          (fs::temp_directory_path() / "emo-never-written").string());
    INFO(file.filename().string() << ": " << r.err);
    CHECK(r.code == 0);
    ++shipped;
  }
  CHECK(shipped >= 6);
  CHECK_FALSE(fs::exists(fs::temp_directory_path() / "emo-never-written"));
  // The paper-scale recipe needs the real checkpoint: any model of the family validates it.
  TempDir tmp;
  REQUIRE(run_emo("init --preset tiny --seed 0 --out " + (tmp / "m").string()).code == 0);
  RunResult big = run_emo("run " + (source_dir() / "recipes/emo-1b14b-gsm8k.yaml").string() + " --dry-run --input base=" +
                          (tmp / "m").string() + " --workdir " + (tmp / "w").string());
  INFO(big.err);
  CHECK(big.code == 0);
  CHECK_FALSE(fs::exists(tmp / "w"));

  RunResult ref = run_emo("run --reference");
  REQUIRE(ref.code == 0);
  std::string doc = read_text_file(source_dir() / "docs/recipes.md");
  size_t begin = doc.find("<!-- generated by `emo run --reference`: begin -->");
  size_t end = doc.find("<!-- generated by `emo run --reference`: end -->");
  REQUIRE(begin != std::string::npos);
  REQUIRE(end != std::string::npos);
  std::string generated = doc.substr(begin, doc.find('\n', end) + 1 - begin);
  CHECK(generated == ref.out);  // else: build/cli/emo run --reference, paste into docs/recipes.md
}

TEST_CASE("a flag of a command is a boolean setting: true passes the bare flag, false leaves it out",
          "[cli][recipes]") {
  TempDir tmp;
  const fs::path file = tmp / "r.yaml";
  auto recipe = [](const std::string& value) {
    return "name: flags\nsteps:\n  - id: score\n    command: eval suite\n    with: {model: \"${emo.data}/models/"
           "emo-tiny\", no-gsm8k: " + value + ", ppl-limit: 1}\n";
  };
  write_file_atomic(file, recipe("true"));
  RunResult on = run_emo("run " + file.string() + " --dry-run --workdir " + (tmp / "w").string());
  INFO(on.err);
  REQUIRE(on.code == 0);
  CHECK(on.out.find("--no-gsm8k --ppl-limit=1") != std::string::npos);
  write_file_atomic(file, recipe("false"));
  RunResult off = run_emo("run " + file.string() + " --dry-run --workdir " + (tmp / "w").string());
  REQUIRE(off.code == 0);
  CHECK(off.out.find("--no-gsm8k") == std::string::npos);
  write_file_atomic(file, recipe("1"));
  RunResult bad = run_emo("run " + file.string() + " --dry-run --workdir " + (tmp / "w").string());
  CHECK(bad.code != 0);
  CHECK(bad.err.find("with.no-gsm8k: expected true or false, got \"1\"") != std::string::npos);
  CHECK(run_emo("run --reference").out.find("| `no-gsm8k` | boolean | Skip GSM8K |") != std::string::npos);
}

TEST_CASE("emo run: a convert step is emo convert's request, the same checkpoint as the command, bad values refused",
          "[cli][recipes]") {
  TempDir tmp;
  REQUIRE(run_emo("init --preset micro --seed 3 --out " + (tmp / "base").string()).code == 0);
  const fs::path file = tmp / "r.yaml";
  auto recipe = [&](const std::string& dtype) {
    return "name: cv\nsteps:\n  - id: wide\n    command: convert\n    with: {model: \"" + (tmp / "base").string() +
           "\", dtype: " + dtype + ", layout: fused}\n";
  };
  write_file_atomic(file, recipe("fp32"));
  RunResult run = run_emo("run " + file.string() + " --workdir " + (tmp / "w").string());
  INFO(run.err);
  REQUIRE(run.code == 0);
  REQUIRE(run_emo("convert --model " + (tmp / "base").string() + " --dtype fp32 --layout fused --out " +
                  (tmp / "by-hand").string()).code == 0);
  auto step = Provenance::load(tmp / "w/wide");
  REQUIRE(step);
  CHECK(step->output_hash == Provenance::load(tmp / "by-hand")->output_hash);
  CHECK(step->command_line == "emo convert --model=" + (tmp / "base").string() + " --dtype=fp32 --layout=fused --out=" +
                                  (tmp / "w/wide").string());
  // The field's own check refuses a dtype before anything runs, naming the step's key.
  write_file_atomic(file, recipe("fp9"));
  RunResult bad = run_emo("run " + file.string() + " --workdir " + (tmp / "w2").string());
  CHECK(bad.code != 0);
  CHECK(bad.err.find("unknown dtype") != std::string::npos);
  CHECK_FALSE(fs::exists(tmp / "w2" / "wide"));
}
