// Shared by the benchmarks: timing a shell baseline beside an in-process candidate,
// warming the page cache, and reading peak anonymous memory.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

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

#include "core/checkpoint/experts.h"
#include "core/checkpoint/init.h"
#include "core/checkpoint/provenance.h"
#include "core/util/fs.h"
#include "core/util/source_dir.h"

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

// Writes a randomly initialised checkpoint of a preset's shape in bf16 (layers > 0: only
// that many layers) with its provenance, as `emo init --preset NAME` does.
inline void write_preset_shape(const fs::path& dir, const std::string& preset, int layers = 0) {
  AtomicDir out(dir, false);
  ModelConfig c = ModelConfig::from_json(parse_json(find_preset(preset).config_json, preset), preset);
  if (layers > 0) c.set_override("num_hidden_layers", std::to_string(layers));
  InitOptions o;
  o.dtype = DType::BF16;
  Provenance prov("init");
  prov.output_hash = write_initialised_model(out.path(), c, o);
  prov.write(out.path());
  out.commit();
}
inline void write_emo14b_shape(const fs::path& dir, int layers = 0) { write_preset_shape(dir, "emo-1b14b", layers); }

// A fixed module of `c`: per MoE layer, routed experts 3, 11, 19, ... (every 8th) until the
// layer keeps `keep` experts with its shared ones (EMO's shared columns are kept anyway).
inline ExpertSelection every_eighth_expert(const ModelConfig& c, int64_t keep) {
  ExpertSelection sel;
  auto specs = c.layers();
  for (int l = 0; l < int(specs.size()); ++l) {
    if (specs[size_t(l)].dense()) continue;
    const int64_t routed = specs[size_t(l)].num_routed();
    for (int64_t e = 0; int64_t(sel.kept[l].size()) < keep - specs[size_t(l)].num_shared_experts; ++e)
      sel.kept[l].push_back((3 + 8 * e) % routed);
    std::sort(sel.kept[l].begin(), sel.kept[l].end());
  }
  return sel;
}

// A peer program driven line by line over pipes: the Python peers of the benchmarks
// (tests/reference/hf_peer.py in the references' environment). It prints "ready" once
// loaded; each request is one line, each answer the next line it prints.
class PeerProcess {
 public:
  explicit PeerProcess(const std::vector<std::string>& argv) {
    int to_child[2], from_child[2];
    if (pipe(to_child) != 0 || pipe(from_child) != 0) die("pipe() failed");
    pid_ = fork();
    if (pid_ == 0) {
      dup2(to_child[0], 0);
      dup2(from_child[1], 1);
      close(to_child[1]), close(from_child[0]);
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
    close(to_child[0]), close(from_child[1]);
    in_ = fdopen(to_child[1], "w");
    out_ = fdopen(from_child[0], "r");
    if (read_line() != "ready") die("the peer did not start: " + argv[0] + " " + (argv.size() > 1 ? argv[1] : ""));
  }
  ~PeerProcess() {
    std::fputs("quit\n", in_);
    std::fclose(in_);
    std::fclose(out_);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
  PeerProcess(const PeerProcess&) = delete;
  PeerProcess& operator=(const PeerProcess&) = delete;

  std::string request(const std::string& line) {
    std::fputs((line + "\n").c_str(), in_);
    std::fflush(in_);
    return read_line();
  }

 private:
  std::string read_line() {
    std::string line;
    int c;
    while ((c = std::fgetc(out_)) != EOF && c != '\n') line += char(c);
    if (c == EOF && line.empty()) die("the peer stopped");
    return line;
  }
  [[noreturn]] static void die(const std::string& why) {
    std::fprintf(stderr, "bench: %s\n", why.c_str());
    std::exit(1);
  }
  pid_t pid_ = -1;
  FILE* in_ = nullptr;
  FILE* out_ = nullptr;
};

// The references' environment (scripts/reference-venv) and its interpreter; the peers.
inline std::string reference_python() {
  if (const char* env = std::getenv("EMO_REFERENCE_VENV")) return std::string(env) + "/bin/python";
  FILE* p = popen(("'" + std::string(::emo::build_source_dir()) + "/scripts/reference-venv' --path").c_str(), "r");
  char buf[4096] = {0};
  std::string path = p && std::fgets(buf, sizeof buf, p) ? std::string(buf) : std::string();
  if (p) pclose(p);
  while (!path.empty() && (path.back() == '\n' || path.back() == ' ')) path.pop_back();
  return path + "/bin/python";
}
inline std::string peer_script() { return std::string(::emo::build_source_dir()) + "/tests/reference/hf_peer.py"; }

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace emo::bench
