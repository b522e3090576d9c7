// emo init and emo inspect from the outside: what a user types, what they get back, and
// how bad input fails (one line, non-zero exit, nothing written).
#include <catch2/catch.hpp>

#include "cli_util.h"
#include "core/io/json.h"
#include "core/model/model_fixtures.h"

using namespace emo;
using namespace emo::test;

TEST_CASE("init then inspect: the tiny preset in HF layout", "[cli]") {
  TempDir tmp;
  std::string out = (tmp / "tiny").string();
  RunResult r = run_emo("init --preset tiny --out " + out + " --seed 3 --json");
  INFO(r.err);
  REQUIRE(r.code == 0);
  Json res = Json::parse(r.out);
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.json", "provenance.yaml", "README.md",
                        "tokenizer_config.json", "generation_config.json"})
    CHECK(fs::exists(fs::path(out) / f));
  RunResult i = run_emo("inspect " + out + " --json --hash");
  REQUIRE(i.code == 0);
  Json j = Json::parse(i.out);
  CHECK(j["model_type"] == "emo");
  CHECK(j["num_experts"] == 32);
  CHECK(j["num_shared_experts"] == 1);
  CHECK(j["top_k"] == 4);
  CHECK(j["params"]["total"] == 5473920);
  CHECK(j["content_hash"] == res["content_hash"]);
  CHECK(j["provenance"]["output_hash"] == res["content_hash"]);
  CHECK(j["provenance"]["command"] == "init");
}

TEST_CASE("the emo-1b14b shape: ~14B total, ~1B active, ~28 GB in bf16 (config only)", "[cli]") {
  // Writing 27 GB is a benchmark, not a test: shrink the layer count and scale up.
  TempDir tmp;
  std::string out = (tmp / "m").string();
  RunResult r = run_emo("init --preset emo-1b14b --set num_hidden_layers=1 --set vocab_size=128 --set pad_token_id=0 --out " + out);
  INFO(r.err);
  REQUIRE(r.code == 0);
  Json j = Json::parse(run_emo("inspect " + out + " --json").out);
  uint64_t per_layer = j["params"]["total"].get<uint64_t>() - 2 * 128 * 2048 - 2048;  // minus embed, head, norm
  uint64_t total16 = 16 * per_layer + 2 * 100352 * 2048 + 2048;
  CHECK(total16 == 13568641024ull);  // 13.6B total
  uint64_t active_per_layer = j["params"]["active"].get<uint64_t>() - 2 * 128 * 2048 - 2048;
  CHECK(16 * active_per_layer + 2048 == 1078003712ull);  // 1.08B active without embeddings (+ final norm)
  CHECK(j["bytes_by_dtype"]["BF16"] == j["params"]["total"].get<uint64_t>() * 2);
}

TEST_CASE("the same seed gives the same bytes, the fused layout gives the same hash", "[cli]") {
  TempDir tmp;
  auto hash = [&](const std::string& name, const std::string& extra) {
    RunResult r = run_emo("init --preset micro --out " + (tmp / name).string() + " --json " + extra);
    REQUIRE(r.code == 0);
    return Json::parse(r.out)["content_hash"].get<std::string>();
  };
  std::string a = hash("a", "--seed 1"), b = hash("b", "--seed 1"), c = hash("c", "--seed 2");
  std::string d = hash("d", "--seed 1 --layout fused --shard-size 100kB");
  CHECK(a == b);
  CHECK(a != c);
  CHECK(a == d);
  CHECK(read_text_file(tmp / "a" / "model.safetensors") == read_text_file(tmp / "b" / "model.safetensors"));
  CHECK(fs::exists(tmp / "d" / "model.safetensors.index.json"));
}

TEST_CASE("convert changes layout and sharding, not content", "[cli]") {
  TempDir tmp;
  REQUIRE(run_emo("init --preset micro --out " + (tmp / "a").string()).code == 0);
  RunResult r = run_emo("convert --model " + (tmp / "a").string() + " --out " + (tmp / "b").string() +
                        " --layout fused --shard-size 50kB --json");
  INFO(r.err);
  REQUIRE(r.code == 0);
  Json a = Json::parse(run_emo("inspect " + (tmp / "a").string() + " --json --hash").out);
  Json b = Json::parse(run_emo("inspect " + (tmp / "b").string() + " --json --hash").out);
  CHECK(a["content_hash"] == b["content_hash"]);
  CHECK(b["expert_layout"] == "fused");
  CHECK(b["weight_files"].get<int>() > 1);
  CHECK(fs::exists(tmp / "b" / "tokenizer.json"));
}

TEST_CASE("bad input: one line on stderr, non-zero exit, no output left behind", "[cli][bad-input]") {
  TempDir tmp;
  std::string out = (tmp / "out").string();
  auto expect_clean_failure = [&](const std::string& args, const std::string& fragment, const std::string& prefix = "") {
    RunResult r = run_emo(args, prefix);
    INFO(args << "\nstderr: " << r.err);
    CHECK(r.code != 0);
    CHECK(r.err.find(fragment) != std::string::npos);
    CHECK(count_lines(r.err) == 1);
    CHECK_FALSE(fs::exists(out));
    for (const auto& e : fs::directory_iterator(tmp.path()))  // no temporaries either
      CHECK(e.path().filename().string().find(".tmp-") == std::string::npos);
  };
  expect_clean_failure("inspect " + (tmp / "missing").string(), "not a checkpoint directory");
  expect_clean_failure("init --preset huge --out " + out, "unknown preset");
  expect_clean_failure("init --preset tiny --set num_layerz=3 --out " + out, "num_layerz: unknown config key");
  expect_clean_failure("init --preset tiny --set num_experts_per_tok=40 --out " + out, "num_experts_per_tok");
  expect_clean_failure("init --preset tiny --dtype int3 --out " + out, "unknown dtype");
  expect_clean_failure("init --preset tiny --out /dev/null/out", "cannot create parent directory");
  // A disk that fills up mid-write: the file-size limit makes write() fail like ENOSPC.
  expect_clean_failure("init --preset tiny --out " + out, "write failed", "ulimit -f 2000;");
  {
    std::string cfg = (tmp / "cfg.json").string();
    write_file_atomic(cfg, R"({"model_type":"emo","vocab_size":"many"})");
    expect_clean_failure("init --config " + cfg + " --out " + out, "vocab_size: expected an integer");
    fs::remove(cfg);
  }
  {
    // An existing output is refused and left as it was.
    fs::create_directory(out);
    RunResult r = run_emo("init --preset micro --out " + out);
    CHECK(r.code != 0);
    CHECK(r.err.find("output exists") != std::string::npos);
    CHECK(fs::is_empty(out));
    fs::remove(out);
  }
}

TEST_CASE("every subcommand has --help saying what it writes", "[cli]") {
  for (const char* cmd : {"inspect", "init", "convert", "tokenize", "logits", "generate", "eval ppl", "eval gsm8k",
                          "eval mc", "eval suite", "eval sweep", "route", "select", "extract", "pretrain", "finetune",
                          "merge", "diff", "run", "lineage", "verify"}) {
    RunResult r = run_emo(std::string(cmd) + " --help");
    INFO(cmd);
    CHECK(r.code == 0);
    CHECK((r.out.find("Writes") != std::string::npos));
    CHECK((r.out.find("Example") != std::string::npos));
  }
}

TEST_CASE("the tiny preset of each transformers family: emo init writes what transformers loads and computes alike",
          "[cli][families][transformers]") {
  for (const char* preset : {"tiny-qwen3-moe", "tiny-qwen2-moe", "tiny-mixtral"}) {
    INFO(preset);
    TempDir tmp;
    const std::string out = (tmp / "m").string();
    RunResult r = run_emo(std::string("init --preset ") + preset + " --seed 2 --set initializer_range=0.15 --out " + out);
    INFO(r.err);
    REQUIRE(r.code == 0);
    auto ids = torch::tensor({{5, 60, 700, 7999, 3}}, torch::kInt64);
    auto peer = transformers_forward(out, ids).at("logits");
    Json ours = Json::parse(run_emo("logits --model " + out + " --ids 5,60,700,7999,3 --json").out);
    double worst = 0;
    for (int64_t t = 0; t < peer.size(1); ++t)
      for (int64_t v = 0; v < peer.size(2); ++v)
        worst = std::max(worst, std::abs(ours[size_t(t)][size_t(v)].get<double>() - peer[0][t][v].item<double>()));
    CHECK(worst <= 1e-4);
    CHECK(peer.abs().max().item<double>() > 0.1);
  }
}
