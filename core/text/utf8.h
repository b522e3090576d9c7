// UTF-8 well-formedness, as Unicode defines it (no overlong forms, no surrogates, nothing
// above U+10FFFF). The tokenizer needs it for HF's byte-level rules; loaders use it to
// refuse text files that are not UTF-8 before any string of them reaches JSON.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace emo {

// Length of the well-formed UTF-8 sequence at s[i], or 0 when there is none; then `*bad`
// is the length of its maximal invalid prefix (Unicode's "maximal subpart"), which is
// what Rust's String::from_utf8_lossy replaces by one U+FFFD.
size_t utf8_sequence(const unsigned char* s, size_t n, size_t i, size_t* bad);

// Byte offset of the first byte that is not part of well-formed UTF-8, if any.
std::optional<size_t> first_invalid_utf8(std::string_view text);

}  // namespace emo
