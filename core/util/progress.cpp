#include "core/util/progress.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/util/error.h"
#include "core/util/fs.h"
#include "core/util/log.h"

namespace emo {

namespace {
std::atomic<int> g_progress_enabled{-1};  // -1: decide from isatty
}

bool Progress::enabled() {
  int e = g_progress_enabled.load();
  if (e < 0) e = ::isatty(2) ? 1 : 0;
  return e == 1;
}
void Progress::set_enabled(bool on) { g_progress_enabled = on ? 1 : 0; }

Progress::Progress(std::string label, uint64_t total, std::string unit)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), start_(std::chrono::steady_clock::now()) {
  last_draw_ = start_ - std::chrono::seconds(1);
}

Progress::~Progress() {
  if (!finished_ && enabled()) std::fprintf(stderr, "\n");
}

double Progress::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

double Progress::rate() const {
  double s = elapsed_seconds();
  return s > 0 ? double(done_) / s : 0.0;
}

void Progress::update(uint64_t done, const std::string& extra) {
  done_ = done;
  extra_ = extra;
  auto now = std::chrono::steady_clock::now();
  if (now - last_draw_ < std::chrono::milliseconds(200)) return;  // redraws cost more than they tell
  last_draw_ = now;
  draw(false);
}

void Progress::finish(const std::string& extra) {
  if (!extra.empty()) extra_ = extra;
  if (total_ && done_ < total_) done_ = total_;
  draw(true);
  finished_ = true;
}

void Progress::draw(bool final_line) {
  if (!enabled()) return;
  double secs = elapsed_seconds();
  double r = secs > 0 ? double(done_) / secs : 0;
  std::string rate_text = unit_ == "bytes" ? human_bytes(r) + "/s" : human_count(r) + " " + unit_ + "/s";
  std::string line = label_;
  if (total_) {
    double frac = double(done_) / double(total_);
    int width = 24, filled = int(frac * width + 0.5);
    line += " [" + std::string(size_t(filled), '#') + std::string(size_t(width - filled), '.') + "] ";
    char pct[16];
    std::snprintf(pct, sizeof pct, "%5.1f%%", 100 * frac);
    line += pct;
    if (!final_line && r > 0) line += " ETA " + human_seconds(double(total_ - std::min(done_, total_)) / r);
  } else {
    line += " " + (unit_ == "bytes" ? human_bytes(double(done_)) : human_count(double(done_)) + " " + unit_);
  }
  line += "  " + rate_text;
  if (final_line) line += "  " + human_seconds(secs);
  if (!extra_.empty()) line += "  " + extra_;
  std::fprintf(stderr, "\r\033[2K%s%s", line.c_str(), final_line ? "\n" : "");
  std::fflush(stderr);
}

MetricsLog::MetricsLog(const std::string& path) { open(path); }

MetricsLog::~MetricsLog() {
  if (fd_ >= 0) ::close(fd_);
}

void MetricsLog::open(const std::string& path) {
  if (fd_ >= 0) ::close(fd_);
  path_ = path;
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd_ < 0) fail(path, "", "cannot open metrics log for writing: ", std::strerror(errno));
}

void MetricsLog::write(const Json& record) {
  if (fd_ < 0) return;
  std::string line = record.dump() + "\n";
  uint64_t written = 0;
  if (!write_all(fd_, line.data(), line.size(), &written)) fail(path_, "", "writing metrics failed: ", std::strerror(errno));
}

}  // namespace emo
