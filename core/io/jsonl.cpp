#include "core/io/jsonl.h"

#include <cerrno>
#include <cstring>

#include "core/util/error.h"
#include "core/util/fs.h"

namespace emo {

JsonlReader::JsonlReader(const std::string& path) : path_(path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) fail(path, "", "missing (or not a file)");
  file_ = gzopen(path.c_str(), "rb");
  if (!file_) fail(path, "", "cannot open: ", std::strerror(errno));
  gzbuffer(file_, 1 << 17);
}

JsonlReader::~JsonlReader() {
  if (file_) gzclose(file_);
}

bool JsonlReader::read_line(std::string& out) {
  out.clear();
  char buf[1 << 16];
  for (;;) {
    if (!gzgets(file_, buf, sizeof buf)) {
      int err = 0;
      const char* msg = gzerror(file_, &err);
      if (err != Z_OK && err != Z_BUF_ERROR) fail(path_, cat("line ", line_ + 1), "read failed: ", msg);
      return !out.empty();
    }
    out += buf;
    if (out.size() > kMaxJsonlLine)
      fail(path_, cat("line ", line_ + 1), "longer than ", kMaxJsonlLine >> 20, " MiB; not a JSON Lines record");
    if (!out.empty() && out.back() == '\n') {
      out.pop_back();
      if (!out.empty() && out.back() == '\r') out.pop_back();
      return true;
    }
  }
}

bool JsonlReader::next(Json& record) {
  std::string text;
  while (read_line(text)) {
    ++line_;
    if (text.find_first_not_of(" \t") == std::string::npos) continue;
    std::string where = cat(path_, ": line ", line_);
    record = parse_json(text, where);
    if (!record.is_object()) fail(path_, cat("line ", line_), "expected a JSON object, found ", record.type_name());
    return true;
  }
  return false;
}

bool JsonlReader::next_skipping_bad(Json& record, size_t& skipped) {
  for (;;) {
    try {
      return next(record);
    } catch (const Error& e) {
      if (e.detail().find("read failed") != std::string::npos) throw;
      ++skipped;
    }
  }
}

JsonlWriter::JsonlWriter(const std::string& path) : path_(path) {}

void JsonlWriter::write(const Json& record) { text_ += record.dump() + "\n"; }

void JsonlWriter::close() { write_file_atomic(path_, text_); }

}  // namespace emo
