#include "core/util/fs.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <vector>

#include "core/util/error.h"

namespace emo {

namespace {

std::string errno_text() { return std::strerror(errno); }

// Ignore SIGXFSZ so that exceeding a file-size limit shows up as a write error (EFBIG)
// with a message, instead of killing the process silently.
void ignore_sigxfsz_once() {
  static bool done = [] {
    signal(SIGXFSZ, SIG_IGN);
    return true;
  }();
  (void)done;
}

}  // namespace

namespace {

// Hands the file to `block` one block at a time, in order; errors name the file.
void read_blocks(const fs::path& path, const std::function<void(const char* data, size_t n)>& block) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path.string(), "", "cannot open: ", errno_text());
  std::vector<char> buf(size_t(1) << 20);
  while (in.read(buf.data(), std::streamsize(buf.size())) || in.gcount() > 0) block(buf.data(), size_t(in.gcount()));
  if (in.bad()) fail(path.string(), "", "read failed: ", errno_text());
}

}  // namespace

std::string read_text_file(const fs::path& path, size_t max_bytes) {
  // Read in blocks against the cap rather than trusting the size stat() reports: the
  // path may name a pipe or a device (/dev/zero) that never ends.
  std::string out;
  read_blocks(path, [&](const char* data, size_t n) {
    if (out.size() + n > max_bytes)
      fail(path.string(), "", "larger than ", max_bytes >> 20, " MiB, the limit for a file read whole; refusing it");
    out.append(data, n);
  });
  return out;
}

OutFile::OutFile(const fs::path& path) : path_(path) {
  ignore_sigxfsz_once();
  // O_NOFOLLOW: a symlink planted where an output goes is refused, not written through.
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd_ < 0) fail(path.string(), "", "cannot create: ", errno_text());
}

OutFile::~OutFile() {
  if (fd_ >= 0) ::close(fd_);
}

bool write_all(int fd, const void* data, size_t n, uint64_t* written) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    // Linux caps one write at ~2 GiB; larger tensors go in slices.
    ssize_t w = ::write(fd, p, std::min<size_t>(n, size_t(1) << 30));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      if (w == 0) errno = EIO;
      return false;
    }
    p += w;
    n -= size_t(w);
    *written += uint64_t(w);
  }
  return true;
}

void OutFile::write(const void* data, size_t n) {
  flush_copy();
  if (!write_all(fd_, data, n, &written_))
    fail(path_.string(), "", "write failed after ", written_, " bytes: ", errno_text());
  start_writeback();
}

void OutFile::copy_from(int src_fd, uint64_t src_offset, size_t n, const void* same_bytes_mapped) {
  const char* mapped_bytes = static_cast<const char*>(same_bytes_mapped);
  if (pending_.n && pending_.fd == src_fd && pending_.offset + pending_.n == src_offset &&
      pending_.mapped + pending_.n == mapped_bytes && pending_.n + n <= kCopyRun) {
    pending_.n += n;
    return;
  }
  flush_copy();
  pending_ = {src_fd, src_offset, n, mapped_bytes};
}

void OutFile::flush() { flush_copy(); }

void OutFile::flush_copy() {
  if (!pending_.n) return;
  PendingCopy p = pending_;
  pending_ = {};
  size_t n = p.n;
  const uint64_t src_offset = p.offset;
  const char* mapped = p.mapped;
  loff_t in_off = loff_t(src_offset);
  while (n > 0) {
    ssize_t w = ::copy_file_range(p.fd, &in_off, fd_, nullptr, std::min<size_t>(n, size_t(1) << 30), 0);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      // Not supported across these filesystems (EXDEV, EINVAL, ENOSYS...) or a short
      // copy: write the rest from the mapping, which reports real errors properly.
      write(mapped + (uint64_t(in_off) - src_offset), n);
      return;
    }
    n -= size_t(w);
    written_ += uint64_t(w);
  }
  start_writeback();
}

void OutFile::start_writeback() {
  if (written_ - writeback_from_ < kCopyRun) return;
  // Only a hint (errors surface at fdatasync): without it every byte waits for the
  // final fsync; with it the disk writes while the next pieces are copied and hashed.
  ::sync_file_range(fd_, loff_t(writeback_from_), loff_t(written_ - writeback_from_), SYNC_FILE_RANGE_WRITE);
  writeback_from_ = written_;
}

void OutFile::sync() {
  flush_copy();
  if (::fdatasync(fd_) != 0) fail(path_.string(), "", "fsync failed: ", errno_text());
}

void OutFile::close() {
  if (fd_ < 0) return;
  sync();
  int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) fail(path_.string(), "", "close failed: ", errno_text());
}

void fsync_dir(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) fail(dir.string(), "", "cannot open directory: ", errno_text());
  ::fsync(fd);  // best effort: some filesystems refuse fsync on directories
  ::close(fd);
}

void write_file_atomic(const fs::path& path, std::string_view content) {
  // A writer killed between its temporary and the rename left PATH.tmp-<pid>: a file
  // rewritten on every resume (metrics.jsonl) would otherwise keep that debris for good.
  remove_stale_temporaries(path);
  fs::path tmp = path;
  tmp += cat(".tmp-", ::getpid());
  try {
    OutFile out(tmp);
    out.write(content.data(), content.size());
    out.close();
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    std::error_code ec;
    fs::remove(tmp, ec);
    fail(path.string(), "", "rename failed: ", errno_text());
  }
}

namespace {

bool process_alive(long pid) { return pid > 0 && (::kill(pid_t(pid), 0) == 0 || errno == EPERM); }

fs::path absolute_clean(const fs::path& p) { return fs::absolute(p).lexically_normal(); }

}  // namespace

void remove_stale_temporaries(const fs::path& target) {
  fs::path t = absolute_clean(target);
  if (t.filename().empty()) t = t.parent_path();
  fs::path parent = t.parent_path();
  std::error_code ec;
  if (!fs::is_directory(parent, ec)) return;
  // OUT.tmp-<pid>: an output being written; OUT.old-<pid>: the output it replaces, moved
  // aside for the instant of the rename. Either one of a dead process is debris of a
  // kill and never a complete output under OUT's name.
  const std::string out_name = t.filename().string();
  const std::string prefixes[] = {out_name + ".tmp-", out_name + ".old-"};
  for (const auto& entry : fs::directory_iterator(parent, ec)) {
    std::string name = entry.path().filename().string();
    for (const std::string& prefix : prefixes) {
      if (name.rfind(prefix, 0) != 0) continue;
      char* end = nullptr;
      long pid = std::strtol(name.c_str() + prefix.size(), &end, 10);
      if (end && *end == '\0' && !process_alive(pid)) fs::remove_all(entry.path(), ec);
    }
  }
}

AtomicDir::AtomicDir(const fs::path& target, bool overwrite) : overwrite_(overwrite) {
  target_ = absolute_clean(target);
  if (target_.filename().empty()) target_ = target_.parent_path();
  fs::path parent = target_.parent_path();
  std::error_code ec;
  if (!fs::is_directory(parent, ec)) {
    fs::create_directories(parent, ec);
    if (ec) fail(target.string(), "", "cannot create parent directory: ", ec.message());
  }
  if (fs::exists(target_, ec) && !overwrite)
    fail(target.string(), "", "output exists (pass --force to replace it)");
  if (::access(parent.c_str(), W_OK) != 0)
    fail(target.string(), "", "output directory not writable: ", errno_text());
  remove_stale_temporaries(target_);
  tmp_ = parent / cat(target_.filename().string(), ".tmp-", ::getpid());
  fs::remove_all(tmp_, ec);
  if (!fs::create_directory(tmp_, ec))
    fail(target.string(), "", "cannot create temporary directory: ", ec.message());
}

AtomicDir::~AtomicDir() {
  if (committed_) return;
  std::error_code ec;
  fs::remove_all(tmp_, ec);
}

void AtomicDir::commit() {
  fsync_dir(tmp_);
  std::error_code ec;
  fs::path old;
  if (fs::exists(target_, ec)) {
    if (!overwrite_) fail(target_.string(), "", "output appeared while writing; not replacing it");
    // Move the old output aside first so that at every instant OUT is either the old or
    // the new complete directory.
    old = target_;
    old += cat(".old-", ::getpid());
    fs::remove_all(old, ec);
    if (::rename(target_.c_str(), old.c_str()) != 0)
      fail(target_.string(), "", "cannot move old output aside: ", errno_text());
  }
  if (::rename(tmp_.c_str(), target_.c_str()) != 0)
    fail(target_.string(), "", "cannot rename output into place: ", errno_text());
  committed_ = true;
  fsync_dir(target_.parent_path());
  if (!old.empty()) fs::remove_all(old, ec);
}

void remove_output_dir(const fs::path& dir) {
  std::error_code ec;
  remove_stale_temporaries(dir);
  fs::path doomed = absolute_clean(dir);
  if (doomed.filename().empty()) doomed = doomed.parent_path();
  doomed += cat(".old-", ::getpid());
  fs::remove_all(doomed, ec);
  fs::rename(dir, doomed, ec);
  fs::remove_all(ec ? dir : doomed, ec);
}

void copy_file_synced(const fs::path& from, const fs::path& to) {
  // In blocks: a carried file may be large and is never held in memory whole.
  OutFile out(to);
  read_blocks(from, [&](const char* data, size_t n) { out.write(data, n); });
  out.close();
}

}  // namespace emo
