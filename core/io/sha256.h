// SHA-256 (OpenSSL), streaming. Content hashes and data-file hashes are "sha256:<hex>".
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace emo {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;
  void update(const void* data, size_t n);
  void update(std::string_view s) { update(s.data(), s.size()); }
  std::string hex();  // finalises

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class MappedFile;

std::string sha256_hex(std::string_view bytes);
// Hashes n bytes of `file` starting at `data` (a pointer into its mapping) through
// pread() into a small buffer: SHA-256 then reads from cache instead of walking the
// mapping page by page, ~25% faster alone and ~2x beside a kernel copy of the same
// pages (bench_io). Falls back to the mapping if the descriptor cannot be read.
void hash_mapped_range(Sha256& h, const MappedFile& file, const void* data, size_t n);
// "sha256:<hex>" of a file's bytes, streamed.
std::string hash_file(const std::string& path);

}  // namespace emo
