// bench/io: read and re-write a multi-GB checkpoint with emo (streaming, fsynced,
// hashed on the way) against `cp` of the same files followed by `sync`. Both start alike
// (bench_util's level_start: the input alone in the page cache) and take turns going
// first; the ratio is of the medians, emo / cp. Goal: <= 1.3.
//
//   bench_io [--dir DIR] [--layers N] [--rounds R]
#include <cstring>
#include <thread>

#include "bench/bench_util.h"
#include "core/checkpoint/convert.h"
#include "core/checkpoint/init.h"
#include "core/util/log.h"

using namespace emo;
using namespace emo::bench;

int main(int argc, char** argv) {
  bench::check_flag_pairs(argc, argv, "bench_io [--dir DIR] [--layers N] [--rounds R]");
  fs::path dir = "/tmp/emo-bench-io";
  int layers = 2, rounds = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--dir")) dir = argv[i + 1];
    else if (!std::strcmp(argv[i], "--layers")) layers = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--rounds")) rounds = std::atoi(argv[i + 1]);
  }
  fs::create_directories(dir);
  fs::path input = dir / "input";
  if (!fs::exists(input / "config.json")) {
    std::printf("creating the input: emo-1b14b shape with %d layers (bf16)...\n", layers);
    write_emo14b_shape(input, layers);
  }
  Checkpoint ck = Checkpoint::open(input);
  const double gb = double(ck.store().bytes_on_disk()) / 1e9;
  std::printf("input: %s, %.2f GB in %zu files\n", input.c_str(), gb, ck.store().files().size());
  std::vector<double> cp_times, emo_times;
  for (int r = 0; r < rounds; ++r) {
    timed_pair(
        r, [&] { level_start({dir / "out-cp", dir / "out-emo"}, {input}); },
        [&] { run_shell("cp -r '" + input.string() + "' '" + (dir / "out-cp").string() + "' && sync"); },
        [&] {
          AtomicDir out(dir / "out-emo", true);
          convert_checkpoint(ck, out.path(), {});
          out.commit();
        },
        cp_times, emo_times);
    std::printf("round %d: cp+sync %.2fs, emo %.2fs\n", r + 1, cp_times.back(), emo_times.back());
  }
  fs::remove_all(dir / "out-cp");
  fs::remove_all(dir / "out-emo");
  double cp = median(cp_times), em = median(emo_times);
  std::printf("\n%-28s %8s %10s\n", "", "seconds", "GB/s");
  std::printf("%-28s %8.2f %10.2f\n", "cp -r + sync (baseline)", cp, gb / cp);
  std::printf("%-28s %8.2f %10.2f\n", "emo read+rewrite+hash", em, gb / em);
  std::printf("ratio emo/cp = %.2fx (goal <= 1.3x), median of %d rounds\n", em / cp, rounds);
  return 0;
}
