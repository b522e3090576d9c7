// emo merge and emo diff from the outside.
#include <catch2/catch.hpp>

#include "cli_util.h"
#include "core/io/json.h"

using namespace emo;
using namespace emo::test;

TEST_CASE("merge of an unchanged module: emo diff finds nothing, --strict fails", "[cli][merge]") {
  TempDir tmp;
  std::string base = (tmp / "base").string(), mod = (tmp / "m").string();
  REQUIRE(run_emo("init --preset micro --seed 4 --out " + base).code == 0);
  write_file_atomic(tmp / "e.json", R"({"0": [1, 2], "1": [3, 4]})");
  REQUIRE(run_emo("extract --model " + base + " --experts " + (tmp / "e.json").string() + " --out " + mod).code == 0);
  RunResult m = run_emo("merge --base " + base + " --module " + mod + " --out " + (tmp / "merged").string() + " --json");
  INFO(m.err);
  REQUIRE(m.code == 0);
  Json j = Json::parse(m.out);
  CHECK(j["changed"] == false);
  CHECK(m.err.find("the merge changed nothing") != std::string::npos);
  RunResult d = run_emo("diff " + base + " " + (tmp / "merged").string() + " --exit-code --json");
  CHECK(d.code == 0);
  CHECK(Json::parse(d.out)["identical"] == true);
  CHECK(read_text_file(tmp / "base" / "model.safetensors") == read_text_file(tmp / "merged" / "model.safetensors"));
  RunResult strict = run_emo("merge --base " + base + " --module " + mod + " --out " + (tmp / "m2").string() + " --strict");
  CHECK(strict.code == 3);
  // A diff that finds differences says where.
  REQUIRE(run_emo("init --preset micro --seed 5 --out " + (tmp / "other").string()).code == 0);
  RunResult d2 = run_emo("diff " + base + " " + (tmp / "other").string() + " --exit-code");
  CHECK(d2.code == 1);
  CHECK(d2.out.find("model.embed_tokens.weight") != std::string::npos);
}

TEST_CASE("merge bad input: one line, non-zero exit, nothing written", "[cli][merge][bad-input]") {
  TempDir tmp;
  std::string base = (tmp / "base").string(), out = (tmp / "out").string();
  REQUIRE(run_emo("init --preset micro --seed 4 --out " + base).code == 0);
  REQUIRE(run_emo("init --preset micro --seed 6 --out " + (tmp / "other").string()).code == 0);
  REQUIRE(run_emo("init --preset tiny --seed 6 --out " + (tmp / "big").string()).code == 0);
  write_file_atomic(tmp / "e.json", R"({"0": [1, 2], "1": [3, 4]})");
  REQUIRE(run_emo("extract --model " + (tmp / "other").string() + " --experts " + (tmp / "e.json").string() + " --out " +
                  (tmp / "foreign").string()).code == 0);
  // The tiny preset routes top-4, so its module keeps at least four experts per layer.
  write_file_atomic(tmp / "e4.json", R"({"0": [1, 2, 3, 4], "1": [3, 4, 5, 6]})");
  REQUIRE(run_emo("extract --model " + (tmp / "big").string() + " --experts " + (tmp / "e4.json").string() + " --out " +
                  (tmp / "bigmod").string()).code == 0);
  REQUIRE(run_emo("extract --model " + base + " --experts " + (tmp / "e.json").string() + " --out " + (tmp / "a").string()).code == 0);
  write_file_atomic(tmp / "f.json", R"({"0": [2, 3], "1": [4, 5]})");
  REQUIRE(run_emo("extract --model " + base + " --experts " + (tmp / "f.json").string() + " --out " + (tmp / "b").string()).code == 0);
  auto expect_failure = [&](const std::string& args, const std::string& fragment, const std::string& target) {
    RunResult r = run_emo(args);
    INFO(args << "\n" << r.err);
    CHECK(r.code != 0);
    CHECK(r.err.find(fragment) != std::string::npos);
    CHECK(count_lines(r.err) == 1);
    CHECK_FALSE(fs::exists(target));
  };
  std::string merge = "merge --base " + base + " --out " + out + " --module ";
  expect_failure(merge + (tmp / "foreign").string(), "not from this base", out);
  expect_failure(merge + (tmp / "bigmod").string() + " --force", "hidden_size: module has 128, base 32", out);
  expect_failure(merge + (tmp / "a").string() + " --module " + (tmp / "b").string(), "also carried by", out);
  expect_failure("merge --base " + base + " --module " + (tmp / "a").string() + " --out /dev/null/x", "cannot create parent directory",
                 "/dev/null/x");
  RunResult ok = run_emo(merge + (tmp / "a").string() + " --module " + (tmp / "b").string() + " --overlap first");
  CHECK(ok.code == 0);
}
