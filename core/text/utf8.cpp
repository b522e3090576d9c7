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

std::string utf8_lossy(std::string bytes) {
  if (!first_invalid_utf8(bytes)) return bytes;
  static constexpr char kReplacement[] = "\xEF\xBF\xBD";
  const auto* s = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  std::string out;
  out.reserve(n + 16);
  for (size_t i = 0; i < n;) {
    size_t bad = 0;
    const size_t length = utf8_sequence(s, n, i, &bad);
    if (length > 0) {
      out.append(bytes, i, length);
      i += length;
    } else {
      out += kReplacement;
      i += bad;
    }
  }
  return out;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

char32_t decode_utf8_at(std::string_view text, size_t i, size_t* length) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const unsigned char lead = s[i];
  if (lead < 0x80) {
    *length = 1;
    return lead;
  }
  const size_t width = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
  char32_t cp = lead & (0xFF >> (width + 1));
  for (size_t k = 1; k < width; ++k) cp = (cp << 6) | (s[i + k] & 0x3F);
  *length = width;
  return cp;
}

size_t utf8_length(std::string_view text) {
  size_t n = 0;
  for (unsigned char c : text) n += (c & 0xC0) != 0x80;
  return n;
}

}  // namespace emo
