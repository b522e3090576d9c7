// bench/extract: extract 16 of 128 experts per layer from an emo-1b14b-shape checkpoint
// (bf16, written by `emo init --preset emo-1b14b` if absent; --preset qwen3-30b-a3b --layers 4
// for a slice of another family's real shape) against `cp` of a file of
// the output's size followed by `sync`, in one run, both with their input in the page
// cache (the extraction runs once untimed to read its parts of the input). Also the
// peak anonymous memory of the extraction. Goals: ratio <= 1.3x, RssAnon <= 1 GiB.
//
//   bench_extract [--model DIR] [--preset emo-1b14b] [--layers N] [--dir SCRATCH] [--keep 16] [--rounds 2]
#include <cstring>

#include "bench/bench_util.h"
#include "core/checkpoint/content_hash.h"
#include "core/checkpoint/init.h"
#include "core/checkpoint/provenance.h"
#include "core/util/log.h"
#include "surgery/extract.h"

using namespace emo;
using namespace emo::bench;

int main(int argc, char** argv) {
  bench::check_flag_pairs(argc, argv,
                          "bench_extract [--model DIR] [--preset emo-1b14b] [--layers N] [--dir SCRATCH] [--keep 16] [--rounds 2]");
  fs::path dir = "/tmp/emo-bench-extract", model;
  std::string preset = "emo-1b14b";
  int64_t keep = 16;
  int rounds = 2, layers = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--model")) model = argv[i + 1];
    else if (!std::strcmp(argv[i], "--dir")) dir = argv[i + 1];
    else if (!std::strcmp(argv[i], "--keep")) keep = std::atoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--rounds")) rounds = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--preset")) preset = argv[i + 1];
    else if (!std::strcmp(argv[i], "--layers")) layers = std::atoi(argv[i + 1]);
  }
  fs::create_directories(dir);
  if (model.empty()) model = dir / (layers > 0 ? preset + "-" + std::to_string(layers) + "layers" : preset);
  if (!fs::exists(model / "config.json")) {
    std::printf("writing the %s checkpoint (bf16%s, a few minutes)...\n", preset.c_str(),
                layers > 0 ? cat(", ", layers, " layers").c_str() : "");
    write_preset_shape(model, preset, layers);
  }
  Checkpoint parent = Checkpoint::open(model);
  const ModelConfig& c = parent.config();
  // A fixed module: routed experts 3, 11, 19, ... (every 8th) plus the shared expert.
  ExpertSelection sel = every_eighth_expert(c, keep);
  std::string parent_hash = parent_content_hash(parent, false);
  ExtractPlan plan = plan_extract(parent, sel, parent_hash);
  fs::path out_dir = dir / "module";
  auto extract = [&] {
    AtomicDir out(out_dir, true);
    write_extract(parent, plan, out.path());
    out.commit();
  };
  extract();  // untimed: the output's size, for the baseline
  uint64_t out_bytes = 0;
  for (const auto& e : fs::directory_iterator(out_dir))
    if (e.path().extension() == ".safetensors") out_bytes += fs::file_size(e.path());
  std::printf("input %s (%s), module keeps %lld of %lld experts per layer: %s of weights\n", model.c_str(),
              human_bytes(double(parent.store().bytes_on_disk())).c_str(), (long long)keep, (long long)c.num_experts,
              human_bytes(double(out_bytes)).c_str());
  fs::path src = dir / "cp-source.bin";
  if (!fs::exists(src) || fs::file_size(src) != out_bytes)
    run_shell("head -c " + std::to_string(out_bytes) + " /dev/urandom > '" + src.string() + "'");
  std::vector<double> cp_times, emo_times;
  long peak = 0;
  for (int r = 0; r < rounds; ++r) {
    // Each contender starts with its input in the page cache: the 27 GB input does not fit
    // beside everything else, so its parts are read again right before the timed run.
    extract();
    fs::remove_all(out_dir);  // deleting 4.6 GB is not part of extracting
    run_shell("sync");
    double secs = 0;
    long p = peak_rss_anon_kb([&] { secs = seconds_of(extract); });
    emo_times.push_back(secs);
    peak = std::max(peak, p);
    run_shell("cat '" + src.string() + "' > /dev/null; sync");
    cp_times.push_back(seconds_of([&] { run_shell("cp '" + src.string() + "' '" + (dir / "cp-dest.bin").string() + "' && sync"); }));
    fs::remove(dir / "cp-dest.bin");
    std::printf("round %d: cp+sync %.2fs, emo extract %.2fs, peak RssAnon %.0f MB\n", r + 1, cp_times.back(), secs, p / 1024.0);
  }
  double cp = median(cp_times), em = median(emo_times);
  std::printf("\n%-32s %8.2f s\n%-32s %8.2f s\n", "cp of the output's size + sync", cp, "emo extract (streamed, fsynced)", em);
  std::printf("ratio extract/cp = %.2fx (goal <= 1.3x); peak RssAnon %.0f MB (goal <= 1024 MB)\n", em / cp, peak / 1024.0);
  fs::remove_all(out_dir);
  return 0;
}
