// Shared by the benchmarks: timing a shell baseline beside an in-process candidate,
// warming the page cache, and reading peak anonymous memory.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "core/checkpoint/init.h"
#include "core/checkpoint/provenance.h"
#include "core/util/fs.h"

namespace emo::bench {

// Every benchmark takes "--flag value" pairs. --help prints `usage`; a lone flag is an
// error: the loops below would otherwise ignore it and start a long run with defaults.
inline void check_flag_pairs(int argc, char** argv, const char* usage) {
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") {
      std::printf("usage: %s\n", usage);
      std::exit(0);
    }
  if ((argc - 1) % 2 != 0) {
    std::fprintf(stderr, "every flag takes a value\nusage: %s\n", usage);
    std::exit(2);
  }
}

inline double seconds_of(const std::function<void()>& f) {
  auto t = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

inline void run_shell(const std::string& cmd) {
  if (std::system(cmd.c_str()) != 0) {
    std::fprintf(stderr, "bench: command failed: %s\n", cmd.c_str());
    std::exit(1);
  }
}

// Reads every file below `dir` once so both contenders start from the page cache.
inline void warm_page_cache(const fs::path& dir) { run_shell("cat '" + dir.string() + "'/* > /dev/null"); }

// Puts each contender at the same start: earlier outputs removed, dirty pages written,
// the clean page cache dropped (as root; otherwise skipped), the inputs read back. Without
// the drop, whoever ran right after a deletion reused the pages it freed while the other
// faulted in fresh ones (on a VM, from the host): the same `cp` took 2.3 s or 4.7 s.
inline void level_start(const std::vector<fs::path>& remove, const std::vector<fs::path>& warm) {
  for (const auto& p : remove) fs::remove_all(p);
  run_shell("sync");
  if (FILE* f = std::fopen("/proc/sys/vm/drop_caches", "w")) {
    std::fputs("1", f);
    std::fclose(f);
  }
  for (const auto& p : warm) warm_page_cache(p);
}

// Runs the two contenders of round r, the baseline first in even rounds and second in odd
// ones, each from level_start; appends their seconds.
inline void timed_pair(int round, const std::function<void()>& start, const std::function<void()>& baseline,
                       const std::function<void()>& candidate, std::vector<double>& baseline_s,
                       std::vector<double>& candidate_s) {
  auto run_baseline = [&] {
    start();
    baseline_s.push_back(seconds_of(baseline));
  };
  auto run_candidate = [&] {
    start();
    candidate_s.push_back(seconds_of(candidate));
  };
  if (round % 2 == 0) run_baseline(), run_candidate();
  else run_candidate(), run_baseline();
}

// Peak anonymous resident memory so far: VmHWM counts file pages too, so sample RssAnon.
inline long rss_anon_kb() {
  std::ifstream in("/proc/self/status");
  std::string key;
  long value = 0;
  while (in >> key) {
    if (key == "RssAnon:") {
      in >> value;
      return value;
    }
    in.ignore(1 << 10, '\n');
  }
  return -1;
}

// Samples RssAnon every 20 ms while `f` runs; returns the peak in kB.
inline long peak_rss_anon_kb(const std::function<void()>& f) {
  std::atomic<bool> done{false};
  std::atomic<long> peak{rss_anon_kb()};
  std::thread sampler([&] {
    while (!done) {
      long now = rss_anon_kb();
      if (now > peak) peak = now;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  f();
  done = true;
  sampler.join();
  return peak;
}

// Writes a randomly initialised emo-1b14b-shape checkpoint in bf16 (layers > 0: only that
// many layers) with its provenance, as `emo init --preset emo-1b14b` does.
inline void write_emo14b_shape(const fs::path& dir, int layers = 0) {
  AtomicDir out(dir, false);
  ModelConfig c = ModelConfig::from_json(parse_json(find_preset("emo-1b14b").config_json, "preset"), "preset");
  if (layers > 0) c.set_override("num_hidden_layers", std::to_string(layers));
  InitOptions o;
  o.dtype = DType::BF16;
  Provenance prov("init");
  prov.output_hash = write_initialised_model(out.path(), c, o);
  prov.write(out.path());
  out.commit();
}

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace emo::bench
