// JSON Lines, plain or gzip-compressed (zlib reads both), one record at a time. Errors
// name the file and the line.
#pragma once

#include <zlib.h>

#include <string>

#include "core/io/json.h"

namespace emo {

// One record's line is bounded, so a file without newlines (or /dev/zero) is refused
// instead of read into memory whole.
inline constexpr size_t kMaxJsonlLine = size_t(64) << 20;

class JsonlReader {
 public:
  explicit JsonlReader(const std::string& path);
  ~JsonlReader();
  JsonlReader(const JsonlReader&) = delete;
  JsonlReader& operator=(const JsonlReader&) = delete;

  // The next non-blank line as a JSON object; false at the end. A line that is not a
  // JSON object throws (file, "line N").
  bool next(Json& record);
  // The same, but a bad line is counted and skipped instead of thrown (--skip-bad).
  bool next_skipping_bad(Json& record, size_t& skipped);
  size_t line() const { return line_; }
  const std::string& path() const { return path_; }

 private:
  bool read_line(std::string& out);
  gzFile file_ = nullptr;
  std::string path_;
  size_t line_ = 0;
};

// Writes records as JSON Lines through a temporary file renamed into place on close().
class JsonlWriter {
 public:
  explicit JsonlWriter(const std::string& path);
  void write(const Json& record);
  void close();

 private:
  std::string path_, text_;
};

}  // namespace emo
