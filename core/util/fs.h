// Files and directories: whole-file reads, atomic writes, and output directories that
// appear only when complete (write into OUT.tmp-<pid>, fsync, rename to OUT last).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace emo {

namespace fs = std::filesystem;

// Files read whole (configs, tokenizers, recipes, experts files) are capped: a hostile
// or mistaken path (a 50 GB file, /dev/zero) gets an error, not an exhausted machine.
inline constexpr size_t kMaxTextFileBytes = size_t(256) << 20;
std::string read_text_file(const fs::path& path, size_t max_bytes = kMaxTextFileBytes);

// Writes `content` to `path` through a temporary sibling, fsyncs, renames: readers never
// see a half-written file.
void write_file_atomic(const fs::path& path, std::string_view content);

// Writes all n bytes to `fd`, retrying interrupted writes and adding to *written as it
// goes; false (errno set) when the system refuses: callers name the file.
bool write_all(int fd, const void* data, size_t n, uint64_t* written);

// An open file descriptor that writes everything or throws emo::Error naming the file
// (a full disk or a file-size limit surfaces here, not as a short file).
class OutFile {
 public:
  explicit OutFile(const fs::path& path);
  ~OutFile();
  OutFile(const OutFile&) = delete;
  OutFile& operator=(const OutFile&) = delete;

  void write(const void* data, size_t n);
  // Appends n bytes of file `src_fd` from `src_offset`, copied inside the kernel
  // (copy_file_range) when the filesystems allow it, else through write(). Requests
  // that continue the previous one in the same source are merged into one call of up
  // to kCopyRun bytes: the kernel copies large ranges several times faster than many
  // 4 MB ones. The copy happens at the next call that does not continue it, or at
  // flush(): a caller overlapping the copy with other work (write_model's hashing) calls
  // flush() while that work runs.
  // `same_bytes_mapped` (the bytes, mapped) must stay valid until the next call.
  void copy_from(int src_fd, uint64_t src_offset, size_t n, const void* same_bytes_mapped);
  void flush();  // performs a pending copy_from now (the caller overlaps it with other work)
  void sync();   // fdatasync
  void close();  // sync + close; the destructor closes without syncing
  uint64_t bytes_written() const { return written_; }
  const fs::path& path() const { return path_; }

 private:
  static constexpr size_t kCopyRun = size_t(64) << 20;
  void flush_copy();
  void start_writeback();  // asks the kernel to start writing what is written so far
  fs::path path_;
  int fd_ = -1;
  uint64_t written_ = 0, writeback_from_ = 0;
  struct PendingCopy {
    int fd = -1;
    uint64_t offset = 0;
    size_t n = 0;
    const char* mapped = nullptr;  // first byte of the range, for the write() fallback
  } pending_;
};

void fsync_dir(const fs::path& dir);

// An output directory that is created under a temporary name and renamed into place by
// commit(). If the object dies without commit() (an exception, a failed write), the
// temporary directory is removed, so no partial output is ever left under OUT.
class AtomicDir {
 public:
  // Throws if `target` exists and !overwrite, or if its parent is not writable.
  AtomicDir(const fs::path& target, bool overwrite);
  ~AtomicDir();
  AtomicDir(const AtomicDir&) = delete;
  AtomicDir& operator=(const AtomicDir&) = delete;

  const fs::path& path() const { return tmp_; }        // where to write now
  const fs::path& target() const { return target_; }   // where it will appear
  fs::path operator/(const std::string& name) const { return tmp_ / name; }
  void commit();

 private:
  fs::path target_, tmp_;
  bool overwrite_;
  bool committed_ = false;
};

// Removes OUT.tmp-<pid> and OUT.old-<pid> siblings left by processes that no longer run
// (killed while writing OUT).
void remove_stale_temporaries(const fs::path& target);

// Deletes an output directory so that it never looks whole while half deleted (a kill in
// the middle of a recursive delete can leave config.json without provenance.yaml): it is
// renamed to DIR.old-<pid> first, which remove_stale_temporaries clears after a kill.
void remove_output_dir(const fs::path& dir);

// Copies a regular file byte for byte (used to carry tokenizer files along).
void copy_file_synced(const fs::path& from, const fs::path& to);

}  // namespace emo
