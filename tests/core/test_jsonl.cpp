// JSON Lines datasets: a bad line names its file and line number; a line is bounded.
#include <catch2/catch.hpp>
#include <zlib.h>

#include <fstream>

#include "core/io/jsonl.h"
#include "core/util/error.h"
#include "test_util.h"

using namespace emo;
using emo::test::TempDir;

TEST_CASE("JSONL: records one by one, a bad line names file and line", "[jsonl][bad-input]") {
  TempDir tmp;
  std::ofstream(tmp / "d.jsonl") << "{\"text\": \"a\"}\n\n{\"text\": \"b\"}\r\n[1, 2]\n";
  JsonlReader r((tmp / "d.jsonl").string());
  Json rec;
  REQUIRE(r.next(rec));
  CHECK(rec["text"] == "a");
  REQUIRE(r.next(rec));
  CHECK(rec["text"] == "b");
  CHECK_THROWS_WITH(r.next(rec), Catch::Contains("d.jsonl: line 4: expected a JSON object, found array"));
}

TEST_CASE("JSONL: a line without end is refused at the line cap, not read whole", "[jsonl][bad-input]") {
  // 80 MiB of 'x' without a newline, gzipped to ~80 KB: a small file that would inflate
  // into one huge line.
  TempDir tmp;
  std::string path = (tmp / "bomb.jsonl.gz").string();
  gzFile gz = gzopen(path.c_str(), "wb9");
  REQUIRE(gz);
  std::string block(size_t(1) << 20, 'x');
  for (int i = 0; i < 80; ++i) REQUIRE(gzwrite(gz, block.data(), unsigned(block.size())) == int(block.size()));
  gzclose(gz);
  JsonlReader r(path);
  Json rec;
  CHECK_THROWS_WITH(r.next(rec), Catch::Contains("bomb.jsonl.gz: line 1: longer than 64 MiB"));
}
