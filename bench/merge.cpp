// bench/merge: merge a 16-expert module into an emo-1b14b-shape bf16 checkpoint (--preset: another
// real shape, e.g. qwen3-30b-a3b).
//  - time: on a 4-layer slice of the shape (~7 GB: base, output and the cp copy of the
//    full 27 GB shape do not fit beside each other on this disk), emo merge against
//    `cp -r` of the base followed by `sync`, both from the same start (bench_util's
//    level_start: base and module alone in the page cache), taking turns going first;
//  - memory: peak anonymous RSS of the merge on the full shape (--full DIR), with the
//    cp copy not made.
// Goals: ratio <= 1.3x, peak RssAnon <= 1 GiB.
//
//   bench_merge [--dir SCRATCH] [--full DIR] [--rounds 2]
#include <cstring>

#include "bench/bench_util.h"
#include "core/checkpoint/content_hash.h"
#include "core/checkpoint/init.h"
#include "core/checkpoint/provenance.h"
#include "merge/merge.h"
#include "surgery/extract.h"

using namespace emo;
using namespace emo::bench;

namespace {

void ensure_base(const fs::path& dir, const std::string& preset, int layers) {
  if (fs::exists(dir / "config.json")) return;
  std::printf("writing %s (%s shape, %d layers, bf16)...\n", dir.c_str(), preset.c_str(), layers);
  write_preset_shape(dir, preset, layers);
}

// A 16-expert module of `base` (EMO: 15 routed + the shared one), extracted once.
fs::path ensure_module(const fs::path& base, const fs::path& dir) {
  if (fs::exists(dir / "config.json")) return dir;
  Checkpoint parent = Checkpoint::open(base);
  ExpertSelection sel = every_eighth_expert(parent.config(), 16);
  AtomicDir out(dir, false);
  Provenance prov("extract");
  prov.output_hash = write_extract(parent, plan_extract(parent, sel, parent_content_hash(parent, false)), out.path());
  prov.write(out.path());
  out.commit();
  return dir;
}

double merge_once(const fs::path& base, const fs::path& module, const fs::path& out_dir) {
  return seconds_of([&] {
    Checkpoint b = Checkpoint::open(base), m = Checkpoint::open(module);
    std::string bh = parent_content_hash(b, false);
    auto sources = resolve_modules(b, bh, {&m}, {parent_content_hash(m, false)}, {});
    AtomicDir out(out_dir, true);
    MergeReport r;
    write_merge(b, sources, {}, out.path(), r);
    copy_extra_files(b, out.path());
    out.commit();
  });
}

}  // namespace

int main(int argc, char** argv) {
  bench::check_flag_pairs(argc, argv, "bench_merge [--preset emo-1b14b] [--dir SCRATCH] [--full DIR] [--rounds 2]");
  fs::path dir = "/tmp/emo-bench-merge", full;
  std::string preset = "emo-1b14b";
  int rounds = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--dir")) dir = argv[i + 1];
    else if (!std::strcmp(argv[i], "--full")) full = argv[i + 1];
    else if (!std::strcmp(argv[i], "--rounds")) rounds = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--preset")) preset = argv[i + 1];
  }
  fs::create_directories(dir);
  fs::path base = dir / (preset + "-4layers");
  ensure_base(base, preset, 4);
  fs::path module = ensure_module(base, dir / (preset + "-module-4layers"));
  const double gb = double(Checkpoint::open(base).store().bytes_on_disk()) / 1e9;
  std::vector<double> cp_times, emo_times;
  for (int r = 0; r < rounds; ++r) {
    timed_pair(
        r, [&] { level_start({dir / "merged", dir / "cp"}, {base, module}); },
        [&] { run_shell("cp -r '" + base.string() + "' '" + (dir / "cp").string() + "' && sync"); },
        [&] { merge_once(base, module, dir / "merged"); }, cp_times, emo_times);
    std::printf("round %d: cp -r + sync %.2fs, emo merge %.2fs\n", r + 1, cp_times.back(), emo_times.back());
  }
  fs::remove_all(dir / "merged");
  fs::remove_all(dir / "cp");
  double cp = median(cp_times), em = median(emo_times);
  std::printf("\nbase: 4-layer slice of %s, %.2f GB (bf16); module: 16 of %lld experts per layer\n", preset.c_str(), gb,
              (long long)Checkpoint::open(base).config().num_experts);
  std::printf("%-28s %8.2f s\n%-28s %8.2f s\nratio merge/cp = %.2fx (goal <= 1.3x)\n", "cp -r + sync", cp, "emo merge", em, em / cp);
  if (!full.empty()) {
    // The full shape's output needs the room of the slice: drop the slice first.
    fs::remove_all(base);
    fs::remove_all(dir / (preset + "-module-4layers"));
    fs::path fmod = ensure_module(full, dir / "module-full");
    long peak = 0;
    double secs = 0;
    peak = peak_rss_anon_kb([&] { secs = merge_once(full, fmod, dir / "merged-full"); });
    fs::remove_all(dir / "merged-full");
    std::printf("full shape (%s): merge %.1fs, peak RssAnon %.0f MB (goal <= 1024 MB)\n", full.c_str(), secs, peak / 1024.0);
  }
  return 0;
}
