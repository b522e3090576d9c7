#include "core/text/utf8.h"

#include <cstring>

namespace emo {

// Length of the well-formed UTF-8 sequence at s[i], or 0 when there is none; then `*bad`
// is the length of its maximal invalid prefix (Unicode's "maximal subpart"), which is
// what Rust's String::from_utf8_lossy replaces by one U+FFFD.
size_t utf8_sequence(const unsigned char* s, size_t n, size_t i, size_t* bad) {
  const unsigned char lead = s[i];
  if (lead < 0x80) return 1;
  size_t width = 0;
  unsigned char low = 0x80, high = 0xBF;  // allowed range of the second byte
  if (lead >= 0xC2 && lead <= 0xDF) {
    width = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    width = 3;
    if (lead == 0xE0) low = 0xA0;   // no overlong forms
    if (lead == 0xED) high = 0x9F;  // no surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    width = 4;
    if (lead == 0xF0) low = 0x90;   // no overlong forms
    if (lead == 0xF4) high = 0x8F;  // nothing above U+10FFFF
  } else {
    *bad = 1;
    return 0;
  }
  if (i + 1 >= n || s[i + 1] < low || s[i + 1] > high) {
    *bad = 1;
    return 0;
  }
  for (size_t k = 2; k < width; ++k) {
    if (i + k >= n || (s[i + k] & 0xC0) != 0x80) {
      *bad = k;
      return 0;
    }
  }
  return width;
}

// Byte offset of the first byte that is not part of well-formed UTF-8, if any.
std::optional<size_t> first_invalid_utf8(std::string_view text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    // ASCII dominates real text: step over it eight bytes at a time.
    while (i + 8 <= n) {
      uint64_t word;
      std::memcpy(&word, s + i, 8);
      if (word & 0x8080808080808080ull) break;
      i += 8;
    }
    if (i >= n) break;
    size_t bad = 0;
    const size_t length = utf8_sequence(s, n, i, &bad);
    if (length == 0) return i;
    i += length;
  }
  return std::nullopt;
}

}  // namespace emo
