// Experts files (--experts): JSON or YAML, the same map either way, strict about keys,
// ids and encoding.
#include <catch2/catch.hpp>

#include <fstream>

#include "core/checkpoint/experts.h"
#include "core/util/error.h"
#include "test_util.h"

using namespace emo;
using emo::test::TempDir;

namespace {
std::string load_error(const TempDir& tmp, const std::string& text) {
  std::ofstream(tmp / "e.yaml", std::ios::binary) << text;
  try {
    ExpertSelection::load((tmp / "e.yaml").string());
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST_CASE("experts files: JSON and YAML give the same sorted selection", "[experts]") {
  TempDir tmp;
  std::ofstream(tmp / "e.json") << R"({"0": [5, 1, 2], "2": [6]})";
  std::ofstream(tmp / "e.yaml") << "\"0\": [5, 1, 2]\n2:\n  - 6\n";
  auto a = ExpertSelection::load((tmp / "e.json").string()), b = ExpertSelection::load((tmp / "e.yaml").string());
  CHECK(a.kept == b.kept);
  CHECK(a.kept.at(0) == std::vector<int64_t>{1, 2, 5});
}

TEST_CASE("experts files: bad keys, ids and bytes name the file and layer", "[experts][bad-input]") {
  TempDir tmp;
  CHECK_THAT(load_error(tmp, "\"0x\": [1]\n"), Catch::Contains("e.yaml: 0x: layer keys must be non-negative integers"));
  CHECK_THAT(load_error(tmp, "0: [1, 1]\n"), Catch::Contains("e.yaml: 0: expert 1 listed twice"));
  CHECK_THAT(load_error(tmp, "0: [one]\n"), Catch::Contains("e.yaml: 0: expert ids must be integers"));
  CHECK_THAT(load_error(tmp, "- 1\n"), Catch::Contains("expected a map from layer index"));
  // Found by fuzz_experts: a byte that is not UTF-8 reached a message's JSON dump() and
  // escaped as nlohmann's type_error. Now the file is refused up front.
  CHECK_THAT(load_error(tmp, "\"0\": [1,\xfb\":;5]\n"), Catch::Contains("e.yaml: byte 8: not valid UTF-8"));
  // Also found by fuzz_experts: valid bytes (\x03\x00 in a plain scalar) that yaml-cpp
  // turns into invalid UTF-8.
  CHECK_THAT(load_error(tmp, std::string("\"0\": [12 2:dense\x03\0_inte+]\n5\n", 28)), Catch::Contains("not valid UTF-8"));
  // And: a float beyond double ("8E2240") made std::stod throw out_of_range.
  CHECK_THAT(load_error(tmp, "8E2240"), Catch::Contains("expected a map from layer index"));
  CHECK_THAT(load_error(tmp, "0: [8E2240]\n"), Catch::Contains("e.yaml: 0: expert ids must be integers"));
}
