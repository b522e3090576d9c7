// Progress of long work: a one-line bar on stderr when it is a terminal (rate, ETA),
// nothing otherwise. Machine-readable metrics go to JSONL (MetricsLog), always.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "core/io/json.h"

namespace emo {

class Progress {
 public:
  // `unit` names what is counted ("tokens", "bytes", "steps"); total 0 = unknown.
  Progress(std::string label, uint64_t total, std::string unit);
  ~Progress();
  void update(uint64_t done, const std::string& extra = "");
  void add(uint64_t n, const std::string& extra = "") { update(done_ + n, extra); }
  void finish(const std::string& extra = "");
  double elapsed_seconds() const;
  double rate() const;  // units per second so far
  static bool enabled();          // stderr is a terminal and output not silenced
  static void set_enabled(bool);  // --quiet / tests

 private:
  void draw(bool final_line);
  std::string label_, unit_, extra_;
  uint64_t total_, done_ = 0;
  std::chrono::steady_clock::time_point start_, last_draw_;
  bool finished_ = false;
};

// Appends one JSON object per line, one write() each, so a crash loses at most one
// record and never leaves half of one. A symlink at the path is refused (O_NOFOLLOW).
class MetricsLog {
 public:
  MetricsLog() = default;
  explicit MetricsLog(const std::string& path);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;
  void open(const std::string& path);
  void write(const Json& record);
  bool is_open() const { return fd_ >= 0; }
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

}  // namespace emo
