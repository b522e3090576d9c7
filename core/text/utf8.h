// UTF-8, in one place: well-formedness as Unicode defines it (no overlong forms, no
// surrogates, nothing above U+10FFFF), encoding and decoding one code point, lossy repair,
// and length in code points. The tokenizer needs them for HF's byte-level rules, the GSM8K
// normaliser to write code points, evaluation for Python's len(); loaders refuse text files
// that are not UTF-8 before any string of them reaches JSON.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace emo {

// Length of the well-formed UTF-8 sequence at s[i], or 0 when there is none; then `*bad`
// is the length of its maximal invalid prefix (Unicode's "maximal subpart"), which is
// what Rust's String::from_utf8_lossy replaces by one U+FFFD.
size_t utf8_sequence(const unsigned char* s, size_t n, size_t i, size_t* bad);

// Byte offset of the first byte that is not part of well-formed UTF-8, if any.
std::optional<size_t> first_invalid_utf8(std::string_view text);

// `bytes` with every maximal invalid subsequence replaced by U+FFFD, like Rust's
// String::from_utf8_lossy (what HF's ByteLevel decoder returns).
std::string utf8_lossy(std::string bytes);

// Appends code point `cp` (<= U+10FFFF) encoded as UTF-8.
void append_utf8(std::string& out, char32_t cp);

// The code point of the well-formed sequence at text[i]; `*length` gets its size in bytes.
char32_t decode_utf8_at(std::string_view text, size_t i, size_t* length);

// Number of code points of UTF-8 text (Python's len() of the str; a display width for
// narrow text).
size_t utf8_length(std::string_view text);

}  // namespace emo
