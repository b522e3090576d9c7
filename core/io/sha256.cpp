#include "core/io/sha256.h"

#include <openssl/evp.h>
#include <unistd.h>

#include <cerrno>

#include <algorithm>
#include <fstream>
#include <vector>

#include "core/io/mapped_file.h"
#include "core/util/error.h"

namespace emo {

struct Sha256::Impl {
  EVP_MD_CTX* ctx = nullptr;
};

Sha256::Sha256() : impl_(new Impl) {
  impl_->ctx = EVP_MD_CTX_new();
  if (!impl_->ctx || EVP_DigestInit_ex(impl_->ctx, EVP_sha256(), nullptr) != 1)
    throw Error("", "", "OpenSSL SHA-256 initialisation failed");
}

Sha256::~Sha256() {
  if (impl_ && impl_->ctx) EVP_MD_CTX_free(impl_->ctx);
}

Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;

void Sha256::update(const void* data, size_t n) {
  if (n) EVP_DigestUpdate(impl_->ctx, data, n);
}

std::string Sha256::hex() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(impl_->ctx, md, &len);
  static const char* digits = "0123456789abcdef";
  std::string out;
  out.reserve(len * 2);
  for (unsigned i = 0; i < len; ++i) {
    out.push_back(digits[md[i] >> 4]);
    out.push_back(digits[md[i] & 15]);
  }
  return out;
}

std::string sha256_hex(std::string_view bytes) {
  Sha256 h;
  h.update(bytes);
  return h.hex();
}

std::string hash_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "", "cannot open for hashing");
  Sha256 h;
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), std::streamsize(buf.size()));
    h.update(buf.data(), size_t(in.gcount()));
  }
  if (in.bad()) fail(path, "", "read failed while hashing");
  return "sha256:" + h.hex();
}

void hash_mapped_range(Sha256& h, const MappedFile& file, const void* data, size_t n) {
  thread_local std::vector<uint8_t> buffer(size_t(1) << 20);
  const uint8_t* p = static_cast<const uint8_t*>(data);
  off_t at = off_t(p - file.data());
  while (n > 0) {
    ssize_t r = ::pread(file.fd(), buffer.data(), std::min(n, buffer.size()), at);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      h.update(p, n);
      return;
    }
    h.update(buffer.data(), size_t(r));
    p += r, at += r, n -= size_t(r);
  }
}

}  // namespace emo
