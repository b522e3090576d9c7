// Outputs appear atomically: a directory is complete under its final name or absent.
#include <catch2/catch.hpp>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include "core/util/error.h"
#include "core/util/fs.h"
#include "core/util/progress.h"
#include "test_util.h"

using namespace emo;
using emo::test::TempDir;

TEST_CASE("AtomicDir appears only on commit", "[fs]") {
  TempDir tmp;
  fs::path out = tmp / "out";
  {
    AtomicDir d(out, false);
    write_file_atomic(d / "a.txt", "hello");
    CHECK_FALSE(fs::exists(out));
    CHECK(fs::exists(d.path() / "a.txt"));
    d.commit();
  }
  CHECK(read_text_file(out / "a.txt") == "hello");
}

TEST_CASE("AtomicDir removes its temporary directory when not committed", "[fs]") {
  TempDir tmp;
  fs::path out = tmp / "out", scratch;
  try {
    AtomicDir d(out, false);
    scratch = d.path();
    write_file_atomic(d / "a.txt", "half");
    throw std::runtime_error("failure while writing");
  } catch (const std::runtime_error&) {
  }
  CHECK_FALSE(fs::exists(out));
  CHECK_FALSE(fs::exists(scratch));
  CHECK(fs::is_empty(tmp.path()));
}

TEST_CASE("existing outputs are refused unless overwriting", "[fs]") {
  TempDir tmp;
  fs::path out = tmp / "out";
  fs::create_directory(out);
  write_file_atomic(out / "old.txt", "old");
  CHECK_THROWS_WITH(AtomicDir(out, false), Catch::Contains("output exists"));
  {
    AtomicDir d(out, true);
    write_file_atomic(d / "new.txt", "new");
    CHECK(fs::exists(out / "old.txt"));  // old output untouched until commit
    d.commit();
  }
  CHECK(fs::exists(out / "new.txt"));
  CHECK_FALSE(fs::exists(out / "old.txt"));
}

TEST_CASE("temporaries of dead processes are cleaned, live ones kept", "[fs]") {
  TempDir tmp;
  fs::path out = tmp / "out";
  fs::create_directory(tmp / "out.tmp-999999999");       // no such pid
  fs::create_directory(tmp / cat("out.tmp-", getpid()));  // this process: alive
  fs::create_directory(tmp / "out.old-999999999");       // a replaced output, moved aside by a killed run
  remove_stale_temporaries(out);
  CHECK_FALSE(fs::exists(tmp / "out.tmp-999999999"));
  CHECK_FALSE(fs::exists(tmp / "out.old-999999999"));
  CHECK(fs::exists(tmp / cat("out.tmp-", getpid())));
}

// What CI met once (recipe crash test): a step re-run deleted its old output in place, was
// killed mid-delete, and left config.json without provenance.yaml: an output that looked
// whole and was not. The delete now happens under a temporary name.
TEST_CASE("an output directory is deleted under a temporary name, and what a killed delete left is cleaned", "[fs]") {
  TempDir tmp;
  fs::path out = tmp / "out";
  fs::create_directories(out / "sub");
  write_file_atomic(out / "config.json", "{}");
  write_file_atomic(out / "sub" / "x", "x");
  fs::create_directories(tmp / "out.old-999999999");  // what a delete killed midway left (no such pid)
  write_file_atomic(tmp / "out.old-999999999" / "config.json", "{}");
  remove_output_dir(out);
  CHECK_FALSE(fs::exists(out));
  CHECK(fs::is_empty(tmp.path()));
  CHECK_NOTHROW(remove_output_dir(out));  // nothing there: nothing to do
}

// What a resumed finetune met in CI: a run killed inside truncate_metrics left
// metrics.jsonl.tmp-<pid>, and every later rewrite of metrics.jsonl left it there.
TEST_CASE("rewriting a file removes the temporary a killed writer left beside it", "[fs]") {
  TempDir tmp;
  fs::path file = tmp / "metrics.jsonl";
  write_file_atomic(file, "1\n");
  { std::ofstream(tmp / "metrics.jsonl.tmp-999999999") << "half"; }  // no such pid
  write_file_atomic(file, "1\n2\n");
  CHECK(read_text_file(file) == "1\n2\n");
  CHECK_FALSE(fs::exists(tmp / "metrics.jsonl.tmp-999999999"));
}

TEST_CASE("a failing write (full disk) throws naming the file and leaves nothing", "[fs][bad-input]") {
  TempDir tmp;
  fs::path out = tmp / "out";
  // The kernel refuses writes past RLIMIT_FSIZE with EFBIG exactly as it refuses them
  // with ENOSPC on a full disk; a child process takes the limit so the test runner does
  // not.
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    struct rlimit lim = {1 << 16, 1 << 16};
    setrlimit(RLIMIT_FSIZE, &lim);
    int code = 3;
    try {
      AtomicDir d(out, false);
      OutFile f(d / "big.bin");
      std::string block(1 << 20, 'x');
      f.write(block.data(), block.size());
      code = 0;
    } catch (const Error& e) {
      std::string msg = e.what();
      code = (msg.find("big.bin") != std::string::npos && msg.find("write failed") != std::string::npos) ? 1 : 2;
    }
    _exit(code);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 1);
  CHECK(fs::is_empty(tmp.path()));
}

TEST_CASE("an unwritable output location is one clear error", "[fs][bad-input]") {
  TempDir tmp;
  std::ofstream(tmp / "file") << "x";
  CHECK_THROWS_WITH(AtomicDir(tmp / "file" / "out", false), Catch::Contains("cannot create parent directory"));
}

TEST_CASE("outputs never write through a symlink planted at their path", "[fs][bad-input]") {
  TempDir tmp;
  std::ofstream(tmp / "victim") << "precious";
  fs::create_symlink(tmp / "victim", tmp / "model.safetensors");
  CHECK_THROWS_WITH(OutFile(tmp / "model.safetensors"), Catch::Contains("model.safetensors: cannot create"));
  fs::create_symlink(tmp / "victim", tmp / "metrics.jsonl");
  CHECK_THROWS_WITH(MetricsLog((tmp / "metrics.jsonl").string()), Catch::Contains("metrics.jsonl: cannot open"));
  // An atomic write replaces the link itself (rename does not follow it).
  write_file_atomic(tmp / "model.safetensors", "new");
  CHECK_FALSE(fs::is_symlink(tmp / "model.safetensors"));
  CHECK(read_text_file(tmp / "victim") == "precious");
}

TEST_CASE("files read whole are capped: a huge or endless file is one clear error", "[fs][bad-input]") {
  TempDir tmp;
  std::ofstream(tmp / "config.json") << "0123456789";
  CHECK(read_text_file(tmp / "config.json", 10) == "0123456789");
  CHECK_THROWS_WITH(read_text_file(tmp / "config.json", 9), Catch::Contains("config.json: larger than"));
  // /dev/zero never ends: refused at the cap, not read until memory runs out.
  CHECK_THROWS_WITH(read_text_file("/dev/zero", size_t(1) << 20), Catch::Contains("/dev/zero: larger than 1 MiB"));
}
