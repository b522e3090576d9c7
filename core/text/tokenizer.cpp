// Byte-level BPE as Hugging Face `tokenizers` (v0.22, the Rust crate) implements it. The
// HF source each part mirrors is named in its comment; the test suite compares the ids
// with the real crate on the whole corpus.
#include "core/text/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>
#include <utility>

#include "core/text/utf8.h"
#include "core/util/error.h"

namespace emo {
namespace {

using json = nlohmann::json;

// ---------------------------------------------------------------------------------------
// UTF-8 (the codec is core/text/utf8.h)

// Start of the last code point of text[0, end) (end > 0, text well-formed).
size_t last_char_start(std::string_view text, size_t end) {
  size_t i = end - 1;
  while (i > 0 && (static_cast<unsigned char>(text[i]) & 0xC0) == 0x80) --i;
  return i;
}

// Unicode's White_Space property: what Rust's regex `\s` (HF's added-token lstrip and
// rstrip) and Oniguruma's `\s` (HF's Split regexes) both match.
bool is_white_space(char32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

// ---------------------------------------------------------------------------------------
// The byte-level alphabet: GPT-2's bytes_to_unicode (HF pre_tokenizers/byte_level.rs).
// Printable Latin-1 bytes stand for themselves; the other 68 are shifted to U+0100.. so
// that every byte is a visible character of the vocabulary.

std::array<char32_t, 256> bytes_to_unicode() {
  std::array<char32_t, 256> table{};
  char32_t next_shifted = 0x100;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    table[b] = printable ? static_cast<char32_t>(b) : next_shifted++;
  }
  return table;
}

// ---------------------------------------------------------------------------------------
// Regexes. HF compiles Split patterns with Oniguruma (Ruby syntax, Unicode); PCRE2 with
// UTF and UCP reads the same syntax the same way except for a few escapes, which
// onig_to_pcre2 rewrites. The differences were checked against HF itself.

[[noreturn]] void reject_escape(char escape, const std::string& file, const std::string& field) {
  fail(file, field, "the regex escape \\", escape,
       " means different things in Oniguruma (which Hugging Face uses) and PCRE2, and"
       " this tokenizer does not translate it");
}

// Rewrites an Oniguruma pattern into a PCRE2 one that matches the same strings:
//  - \s / \S: Oniguruma uses Unicode White_Space; PCRE2's UCP \s also takes U+180E.
//  - \w / \W: Oniguruma's word is Letter|Mark|Number|Connector_Punctuation; PCRE2 10.42's
//    is Letter|Number|'_'.
//  - \h / \H: a hex digit in Oniguruma, horizontal space in PCRE2.
//  - \uHHHH: Oniguruma's code point escape, \x{HHHH} in PCRE2.
//  - (?m): Oniguruma's (Ruby's) dot-matches-newline, PCRE2's (?s). (Ruby's ^ and $ always
//    match at line breaks: the pattern is compiled with PCRE2_MULTILINE.)
// Escapes whose translation would need a nested class (\W, \H inside [...]) and word
// boundaries (\b, \B, defined by \w) are rejected rather than silently mistranslated.
std::string onig_to_pcre2(const std::string& pattern, const std::string& file,
                          const std::string& field) {
  static const std::string kWord = "\\p{L}\\p{M}\\p{N}\\p{Pc}";
  std::string out;
  out.reserve(pattern.size() + 32);
  bool in_class = false;
  size_t class_start = 0;  // index of the first member of the current class
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char e = pattern[++i];
      switch (e) {
        case 's': out += "\\p{White_Space}"; break;
        case 'S': out += "\\P{White_Space}"; break;
        case 'w': out += in_class ? kWord : "[" + kWord + "]"; break;
        case 'W':
          if (in_class) reject_escape(e, file, field);
          out += "[^" + kWord + "]";
          break;
        case 'h': out += in_class ? "0-9a-fA-F" : "[0-9a-fA-F]"; break;
        case 'H':
          if (in_class) reject_escape(e, file, field);
          out += "[^0-9a-fA-F]";
          break;
        case 'b':
          if (in_class) {  // a backspace inside a class, in both engines
            out += "\\b";
            break;
          }
          reject_escape(e, file, field);
        case 'B':
          reject_escape(e, file, field);
        case 'u': {
          const bool four_hex_digits =
              i + 4 < pattern.size() &&
              std::all_of(pattern.begin() + i + 1, pattern.begin() + i + 5,
                          [](char h) { return std::isxdigit(static_cast<unsigned char>(h)); });
          require(four_hex_digits, file, field, "\\u must be followed by four hex digits");
          out += "\\x{" + pattern.substr(i + 1, 4) + "}";
          i += 4;
          break;
        }
        default: out += '\\'; out += e;
      }
      continue;
    }
    if (in_class) {
      if (c == '[' && i + 1 < pattern.size() && pattern[i + 1] == ':') {
        const size_t close = pattern.find(":]", i + 2);  // POSIX bracket [:alpha:]
        require(close != std::string::npos, file, field, "unterminated [: in the regex");
        out.append(pattern, i, close + 2 - i);
        i = close + 1;
        continue;
      }
      if (c == '[' || (c == '&' && i + 1 < pattern.size() && pattern[i + 1] == '&')) {
        fail(file, field, "nested character classes and && are Oniguruma-only and not"
                          " supported in the regex");
      }
      if (c == ']' && i > class_start) in_class = false;
      out += c;
      continue;
    }
    if (c == '[') {
      in_class = true;
      out += c;
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') out += pattern[++i];
      class_start = i + 1;  // a ']' right here is a literal member, in both engines
      continue;
    }
    if (c == '(' && i + 1 < pattern.size() && pattern[i + 1] == '?') {
      // Inline options (?imx-imx) or (?imx-imx:...): only 'm' needs renaming.
      out += "(?";
      size_t j = i + 2;
      while (j < pattern.size() && std::strchr("imx-", pattern[j]) && pattern[j] != '\0') {
        out += pattern[j] == 'm' ? 's' : pattern[j];
        ++j;
      }
      i = j - 1;
      continue;
    }
    out += c;
  }
  return out;
}

// Per-thread PCRE2 match state: compiled patterns are shared, match data is not.
struct MatchState {
  pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
  pcre2_match_context* context = pcre2_match_context_create(nullptr);
  // Long runs (a megabyte of spaces) can backtrack deeper than JIT's default 32 KiB.
  pcre2_jit_stack* stack = pcre2_jit_stack_create(32 * 1024, 16 * 1024 * 1024, nullptr);
  MatchState() {
    pcre2_jit_stack_assign(context, nullptr, stack);
    // `\s*[\r\n]+` backtracks once per character of a whitespace run before `\s+(?!\S)`
    // takes it, so a run of 10 M spaces exceeds PCRE2's default limit of 10 M steps
    // (and Oniguruma's retry limit: HF panics on it). The work within one match stays
    // linear in its length for such patterns, so the limit is lifted: a long run costs
    // time, not an error.
    pcre2_set_match_limit(context, std::numeric_limits<uint32_t>::max());
  }
  ~MatchState() {
    pcre2_jit_stack_free(stack);
    pcre2_match_context_free(context);
    pcre2_match_data_free(data);
  }
  MatchState(const MatchState&) = delete;
  MatchState& operator=(const MatchState&) = delete;
};

MatchState& match_state() {
  thread_local MatchState state;
  return state;
}

class Regex {
 public:
  // `pattern` is PCRE2 syntax; `literal` matches it as a plain string.
  Regex(const std::string& pattern, bool literal, const std::string& file,
        const std::string& field)
      : file_(file), field_(field) {
    uint32_t flags = PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE;
    if (literal) flags = PCRE2_UTF | PCRE2_LITERAL;
    int error = 0;
    PCRE2_SIZE offset = 0;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), flags,
                          &error, &offset, nullptr);
    if (!code_) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error, message, sizeof message);
      fail(file, field, "the regex does not compile at offset ", offset, ": ",
           reinterpret_cast<const char*>(message));
    }
    jit_ = pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE) == 0;
  }
  ~Regex() { pcre2_code_free(code_); }
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // The first match in subject[from, end); false when there is none. The subject must
  // be valid UTF-8 (encode checks it once, up front, so PCRE2 need not on every call).
  bool find(std::string_view subject, size_t from, size_t* begin, size_t* end) const {
    MatchState& state = match_state();
    const auto* s = reinterpret_cast<PCRE2_SPTR>(subject.data());
    const int rc = jit_ ? pcre2_jit_match(code_, s, subject.size(), from, 0, state.data,
                                          state.context)
                        : pcre2_match(code_, s, subject.size(), from, PCRE2_NO_UTF_CHECK,
                                      state.data, state.context);
    if (rc == PCRE2_ERROR_NOMATCH) return false;
    if (rc < 0) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(rc, message, sizeof message);
      fail(file_, field_, "regex match failed: ", reinterpret_cast<const char*>(message));
    }
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(state.data);
    *begin = ovector[0];
    *end = ovector[1];
    return true;
  }

  // Calls visit(begin, end, is_match) for the matches of `subject` and the gaps between
  // them, in order: HF's Pattern::find_matches over rust-onig's FindMatches, including
  // its rule for empty matches (never yielded right after a non-empty one; the search
  // then steps one character on).
  template <typename Visit>
  void for_each_split(std::string_view subject, Visit&& visit) const {
    size_t search_from = 0, gap_start = 0, begin = 0, end = 0;
    bool skip_next_empty = false;
    while (search_from <= subject.size() && find(subject, search_from, &begin, &end)) {
      search_from = end;
      if (begin == end) {
        size_t length = 1;
        if (end < subject.size()) decode_utf8_at(subject, end, &length);
        search_from += length;
        if (skip_next_empty) {
          skip_next_empty = false;
          continue;
        }
      } else {
        skip_next_empty = true;
      }
      if (gap_start < begin) visit(gap_start, begin, false);
      visit(begin, end, true);
      gap_start = end;
    }
    if (gap_start < subject.size()) visit(gap_start, subject.size(), false);
  }

 private:
  std::string file_, field_;  // where the pattern came from, for error messages
  pcre2_code* code_ = nullptr;
  bool jit_ = false;
};

// ---------------------------------------------------------------------------------------
// Pre-tokenizer steps (HF pre_tokenizers/split.rs and byte_level.rs).

enum class SplitBehavior { Removed, Isolated };

// One step of the pre-tokenizer, as loaded: a ByteLevel entry of the file becomes up to
// three steps (prefix space, GPT-2's regex split, the byte mapping).
struct PreTokenizerStep {
  // A Split: the regex and which of its pieces survive.
  std::shared_ptr<const Regex> regex;
  SplitBehavior behavior = SplitBehavior::Isolated;
  bool invert = false;
  // ByteLevel's add_prefix_space: a space before every piece that lacks one.
  bool add_prefix_space = false;
  // ByteLevel's byte mapping: always the last step; the pieces then go to the model,
  // which maps their bytes to the alphabet itself.
  bool byte_level = false;
};

// GPT-2's pre-tokenizer regex, which HF's ByteLevel applies when use_regex is true.
constexpr const char* kByteLevelPattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// ---------------------------------------------------------------------------------------
// Added tokens (HF tokenizer/added_vocabulary.rs).

struct AddedToken {
  std::string content;
  int32_t id = 0;
  bool single_word = false, lstrip = false, rstrip = false, normalized = false,
       special = false;
};

// The tokens matched in one of HF's two passes (non-normalized on the raw text, then
// normalized on what is left). HF uses an Aho-Corasick automaton in LeftmostLongest
// mode; with a few dozen tokens, trying the tokens that start with the current byte,
// longest first, finds the same matches.
class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  AddedTokenMatcher(const std::vector<AddedToken>& tokens, bool normalized,
                    std::shared_ptr<const Regex> word_char)
      : word_char_(std::move(word_char)) {
    for (const AddedToken& token : tokens) {
      if (token.normalized != normalized) continue;
      by_first_byte_[static_cast<unsigned char>(token.content[0])].push_back(token);
      empty_ = false;
    }
    for (auto& candidates : by_first_byte_) {
      std::stable_sort(candidates.begin(), candidates.end(),
                       [](const AddedToken& a, const AddedToken& b) {
                         return a.content.size() > b.content.size();
                       });
    }
  }

  // HF's AddedVocabulary::find_matches: on_text(piece) for the text between tokens,
  // on_token(id) for each token, in order.
  template <typename OnText, typename OnToken>
  void split(std::string_view sentence, OnText&& on_text, OnToken&& on_token) const {
    if (empty_) {
      if (!sentence.empty()) on_text(sentence);
      return;
    }
    size_t start_offset = 0;  // end of the text already handed out
    size_t resume = 0;        // where the automaton resumes: after the last raw match
    while (const AddedToken* token = next_match(sentence, &resume)) {
      size_t stop = resume;
      size_t start = stop - token->content.size();
      // A discarded match still moves the automaton past it, as in HF.
      if (token->single_word && !stands_alone(sentence, start, stop)) continue;
      if (token->lstrip) start = std::max(start_of_trailing_space(sentence, start), start_offset);
      if (token->rstrip) stop = end_of_leading_space(sentence, stop);
      if (start_offset < start) on_text(sentence.substr(start_offset, start - start_offset));
      on_token(token->id);
      start_offset = stop;
    }
    if (start_offset < sentence.size()) on_text(sentence.substr(start_offset));
  }

 private:
  // The leftmost-longest token at or after *from; *from moves to its end.
  const AddedToken* next_match(std::string_view s, size_t* from) const {
    for (size_t at = *from; at < s.size(); ++at) {
      for (const AddedToken& token : by_first_byte_[static_cast<unsigned char>(s[at])]) {
        if (s.compare(at, token.content.size(), token.content) == 0) {
          *from = at + token.content.size();
          return &token;
        }
      }
    }
    return nullptr;
  }

  // single_word: neither neighbour is a word character (Rust regex's Unicode \w).
  bool stands_alone(std::string_view s, size_t start, size_t stop) const {
    size_t begin = 0, end = 0, length = 0;
    if (start > 0) {
      const size_t last = last_char_start(s, start);
      if (word_char_->find(s.substr(0, start), last, &begin, &end)) return false;
    }
    if (stop < s.size()) {
      decode_utf8_at(s, stop, &length);
      if (word_char_->find(s.substr(0, stop + length), stop, &begin, &end)) return false;
    }
    return true;
  }

  // lstrip: where the whitespace run that ends at `end` begins.
  static size_t start_of_trailing_space(std::string_view s, size_t end) {
    while (end > 0) {
      const size_t start = last_char_start(s, end);
      size_t length = 0;
      if (!is_white_space(decode_utf8_at(s, start, &length))) break;
      end = start;
    }
    return end;
  }

  // rstrip: where the whitespace run that starts at `begin` ends.
  static size_t end_of_leading_space(std::string_view s, size_t begin) {
    while (begin < s.size()) {
      size_t length = 0;
      if (!is_white_space(decode_utf8_at(s, begin, &length))) break;
      begin += length;
    }
    return begin;
  }

  std::array<std::vector<AddedToken>, 256> by_first_byte_;
  bool empty_ = true;
  std::shared_ptr<const Regex> word_char_;
};

// ---------------------------------------------------------------------------------------
// BPE merges: an open-addressing table from a pair of ids to (rank, merged id). It is
// probed once per adjacent pair of every uncached piece, so it avoids the node chasing
// of std::unordered_map.

class MergeTable {
 public:
  struct Merge {
    uint32_t rank;
    int32_t merged;
  };

  void reserve(size_t count) {
    size_t capacity = 16;
    while (capacity < 2 * count) capacity *= 2;
    slots_.assign(capacity, Slot{});
    mask_ = capacity - 1;
  }

  // A pair listed twice keeps its last rank, as HF's HashMap collect does.
  void insert(int32_t left, int32_t right, uint32_t rank, int32_t merged) {
    const uint64_t key = pack(left, right);
    for (size_t i = slot_of(key);; i = (i + 1) & mask_) {
      if (slots_[i].key == kEmpty || slots_[i].key == key) {
        slots_[i] = Slot{key, {rank, merged}};
        return;
      }
    }
  }

  const Merge* find(int32_t left, int32_t right) const {
    const uint64_t key = pack(left, right);
    for (size_t i = slot_of(key);; i = (i + 1) & mask_) {
      if (slots_[i].key == key) return &slots_[i].merge;
      if (slots_[i].key == kEmpty) return nullptr;
    }
  }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t{0};  // ids are < 2^31, so never a key
  struct Slot {
    uint64_t key = kEmpty;
    Merge merge{};
  };
  static uint64_t pack(int32_t left, int32_t right) {
    return (uint64_t{static_cast<uint32_t>(left)} << 32) | static_cast<uint32_t>(right);
  }
  size_t slot_of(uint64_t key) const {
    return static_cast<size_t>((key * 0x9E3779B97F4A7C15ull) >> 17) & mask_;
  }
  std::vector<Slot> slots_;
  size_t mask_ = 0;
};

// Per-thread buffers of the merge loops, so that merging allocates nothing once warm.
struct MergeScratch {
  struct Symbol {
    int32_t id;    // -1 once merged into its left neighbour
    int32_t prev;  // index of the live neighbours, -1 at the ends
    int32_t next;
  };
  // A candidate merge of the symbol at `pos` with its right neighbour, valid while the
  // two still hold `left` and `right`; ordered by rank, then position (HF word.rs).
  struct Candidate {
    uint64_t order;  // rank << 32 | pos
    int32_t left, right, merged;
  };
  std::vector<Symbol> symbols;
  std::vector<Candidate> heap;
  std::vector<int32_t> ids;
  std::string text;
};

MergeScratch& merge_scratch() {
  thread_local MergeScratch scratch;
  return scratch;
}

// Pieces are mostly 2 to 8 bytes, and the cache hashes and compares one per lookup. Both
// read the bytes as at most two (possibly overlapping) machine words instead of going
// byte by byte or through a libc call.

template <typename Word>
inline uint64_t load_word(const char* p) {
  Word word;
  std::memcpy(&word, p, sizeof word);
  return word;
}

// Two words that together hold every byte of a piece of up to 16 bytes; with the length
// they determine the piece.
inline std::pair<uint64_t, uint64_t> edge_words(const char* p, size_t n) {
  if (n >= 8) return {load_word<uint64_t>(p), load_word<uint64_t>(p + n - 8)};
  if (n >= 4) return {load_word<uint32_t>(p), load_word<uint32_t>(p + n - 4)};
  if (n == 0) return {0, 0};
  const auto byte = [p](size_t i) { return uint64_t{static_cast<unsigned char>(p[i])}; };
  return {byte(0) | byte(n / 2) << 8 | byte(n - 1) << 16, 0};
}

uint64_t mix(uint64_t a, uint64_t b) {
  const __uint128_t product = static_cast<__uint128_t>(a ^ 0x9E3779B97F4A7C15ull) *
                              (b ^ 0xD6E8FEB86659FD93ull);
  return static_cast<uint64_t>(product) ^ static_cast<uint64_t>(product >> 64);
}

size_t hash_short_bytes(std::string_view piece) {
  const char* p = piece.data();
  size_t n = piece.size();
  uint64_t h = n;
  while (n > 16) {  // rare: long pieces
    h = mix(h ^ load_word<uint64_t>(p), load_word<uint64_t>(p + 8));
    p += 16;
    n -= 16;
  }
  const auto [a, b] = edge_words(p, n);
  return static_cast<size_t>(mix(h ^ a, b ^ (n << 56)));
}

bool same_bytes(const char* a, const char* b, size_t n) {
  if (n > 16) return std::memcmp(a, b, n) == 0;
  return edge_words(a, n) == edge_words(b, n);
}

// ---------------------------------------------------------------------------------------
// The piece cache: piece bytes -> ids. Sharded so that threads encoding at once rarely
// wait on one another; each shard is a fixed-size open-addressing table whose keys and
// ids live in two flat buffers, emptied as a whole when full (bounded memory, no
// eviction bookkeeping, no allocation per entry).

class PieceCache {
 public:
  static constexpr size_t kMaxPieceBytes = 255;  // longer pieces are rare and not kept

  explicit PieceCache(size_t entries) {
    if (entries == 0) return;
    entries_per_shard_ = std::max<size_t>(entries / kShards, 16);
    slots_per_shard_ = 16;
    while (slots_per_shard_ < 2 * entries_per_shard_) slots_per_shard_ *= 2;
    shards_ = std::make_unique<Shard[]>(kShards);
  }

  bool enabled() const { return shards_ != nullptr; }

  static size_t hash(std::string_view piece) { return hash_short_bytes(piece); }

  // Appends the cached ids of `piece` to `out`; false when it is not cached.
  bool find(std::string_view piece, size_t hash, std::vector<int32_t>& out) const {
    Shard& shard = shards_[hash % kShards];
    std::lock_guard<std::mutex> lock(shard.mutex);
    if (shard.slots.empty()) return false;
    const size_t mask = slots_per_shard_ - 1;
    for (size_t i = (hash >> 8) & mask;; i = (i + 1) & mask) {
      const Slot& slot = shard.slots[i];
      if (slot.key_length == 0) return false;
      if (slot.hash == hash && slot.key_length == piece.size() &&
          same_bytes(shard.keys.data() + slot.key_at, piece.data(), piece.size())) {
        out.insert(out.end(), shard.ids.begin() + slot.ids_at,
                   shard.ids.begin() + slot.ids_at + slot.ids_length);
        return true;
      }
    }
  }

  void insert(std::string_view piece, size_t hash, const int32_t* ids, size_t count) {
    if (piece.empty() || piece.size() > kMaxPieceBytes || count > 0xFFFF) return;
    Shard& shard = shards_[hash % kShards];
    std::lock_guard<std::mutex> lock(shard.mutex);
    if (shard.slots.empty() || shard.used == entries_per_shard_) {
      shard.slots.assign(slots_per_shard_, Slot{});
      shard.keys.clear();
      shard.ids.clear();
      shard.used = 0;
    }
    const size_t mask = slots_per_shard_ - 1;
    size_t i = (hash >> 8) & mask;
    while (shard.slots[i].key_length != 0) {
      const Slot& slot = shard.slots[i];
      if (slot.hash == hash && slot.key_length == piece.size() &&
          same_bytes(shard.keys.data() + slot.key_at, piece.data(), piece.size())) {
        return;  // another thread cached it meanwhile
      }
      i = (i + 1) & mask;
    }
    shard.slots[i] = Slot{hash, static_cast<uint32_t>(shard.keys.size()),
                          static_cast<uint32_t>(shard.ids.size()),
                          static_cast<uint16_t>(piece.size()), static_cast<uint16_t>(count)};
    shard.keys.append(piece);
    shard.ids.insert(shard.ids.end(), ids, ids + count);
    ++shard.used;
  }

 private:
  static constexpr size_t kShards = 16;
  struct Slot {
    size_t hash = 0;
    uint32_t key_at = 0, ids_at = 0;
    uint16_t key_length = 0;  // 0: empty slot (pieces are never empty)
    uint16_t ids_length = 0;
  };
  struct Shard {
    std::mutex mutex;
    std::vector<Slot> slots;
    std::string keys;
    std::vector<int32_t> ids;
    size_t used = 0;
  };
  size_t entries_per_shard_ = 0, slots_per_shard_ = 0;
  std::unique_ptr<Shard[]> shards_;
};

// ---------------------------------------------------------------------------------------
// Reading tokenizer.json.

std::string describe(const json& value) {
  std::string text = value.dump();
  if (text.size() > 60) text = text.substr(0, 57) + "...";
  return text;
}

const json& member(const json& object, const char* key, const std::string& file,
                   const std::string& field) {
  if (!object.is_object()) fail(file, field, "expected an object, found ", describe(object));
  const auto it = object.find(key);
  require(it != object.end(), file, field.empty() ? key : field + "." + key, "missing");
  return *it;
}

std::string string_member(const json& object, const char* key, const std::string& file,
                          const std::string& field) {
  const json& value = member(object, key, file, field);
  const std::string name = field.empty() ? key : field + "." + key;
  if (!value.is_string()) fail(file, name, "expected a string, found ", describe(value));
  return value.get<std::string>();
}

// An optional boolean: absent or null gives `fallback`.
bool bool_member(const json& object, const char* key, bool fallback, const std::string& file,
                 const std::string& field) {
  const auto it = object.find(key);
  if (it == object.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) {
    fail(file, field + "." + key, "expected true or false, found ", describe(*it));
  }
  return it->get<bool>();
}

bool null_or_absent(const json& object, const char* key) {
  const auto it = object.find(key);
  return it == object.end() || it->is_null();
}

json read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  require(static_cast<bool>(in), path, "", "cannot open the tokenizer file");
  std::ostringstream bytes;
  bytes << in.rdbuf();
  try {
    return json::parse(bytes.str());
  } catch (const json::exception& e) {  // syntax, and numbers beyond double (found by fuzz_tokenizer)
    fail(path, "", "not valid JSON: ", e.what());
  }
}

// A tokenizer.json path, or a directory's tokenizer.json.
std::string resolve_path(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return (std::filesystem::path(path) / "tokenizer.json").string();
  }
  return path;
}

}  // namespace

// =======================================================================================

struct Tokenizer::Impl {
  std::string path;
  TokenizerOptions options;

  std::vector<PreTokenizerStep> steps;
  AddedTokenMatcher raw_tokens;         // added tokens with normalized = false
  AddedTokenMatcher normalized_tokens;  // normalized = true (no normalizer: same text)

  std::unordered_map<std::string, int32_t> vocab;        // the model's
  std::unordered_map<std::string, int32_t> added_vocab;  // content -> id
  std::vector<AddedToken> added_tokens;
  std::vector<std::string> tokens;  // id -> token string ("" for an unused id)
  std::vector<bool> has_token;
  std::vector<bool> special;
  std::array<int32_t, 256> byte_ids{};  // the initial symbol of each byte
  MergeTable merges;
  bool ignore_merges = false;

  // What each id decodes to (ByteLevel decoder), all in one buffer.
  std::string decoded;
  std::vector<uint32_t> decoded_at;  // id -> offset; decoded_at[id + 1] ends it

  mutable PieceCache cache;

  explicit Impl(std::string file, const TokenizerOptions& opts)
      : path(std::move(file)), options(opts), cache(opts.cache_entries) {}

  // ---- loading ----
  void load(const json& root);
  void check_unsupported(const json& root) const;
  void load_pre_tokenizer(const json& node, const std::string& field);
  void load_model(const json& model);
  void load_merges(const json& list);
  void load_added_tokens(const json& list);
  void check_decoder(const json& root) const;
  void build_id_tables();

  // ---- encoding ----
  void encode(std::string_view text, std::vector<int32_t>& out) const;
  void pre_tokenize(size_t step, std::string_view piece, std::vector<int32_t>& out) const;
  void tokenize_piece(std::string_view piece, std::vector<int32_t>& out) const;
  static constexpr size_t kShortPiece = 32;  // longer pieces take the heap
  void merge_short(std::string_view piece, std::vector<int32_t>& out) const;
  void merge_with_heap(std::string_view piece, std::vector<int32_t>& out) const;
  void merge_naively(std::string_view piece, std::vector<int32_t>& out) const;

  std::optional<int32_t> token_to_id(std::string_view token) const;
  bool is_valid_id(int32_t id) const;
  [[noreturn]] void fail_id(int32_t id, const std::string& field) const;
};

// ---- loading ---------------------------------------------------------------------------

void Tokenizer::Impl::load(const json& root) {
  require(root.is_object(), path, "", "expected a JSON object at the top");
  check_unsupported(root);
  load_model(member(root, "model", path, ""));
  const auto pre = root.find("pre_tokenizer");
  if (pre != root.end() && !pre->is_null()) load_pre_tokenizer(*pre, "pre_tokenizer");
  // The model's vocabulary is byte-level symbols: the text must reach it as bytes mapped
  // through the alphabet, which is what a final ByteLevel step does. Splitting after it
  // would see the mapped characters, which this tokenizer does not model.
  require(!steps.empty() && steps.back().byte_level, path, "pre_tokenizer",
          "a byte-level BPE needs a ByteLevel pre-tokenizer as its last step");
  for (size_t i = 0; i + 1 < steps.size(); ++i) {
    require(!steps[i].byte_level, path, "pre_tokenizer",
            "ByteLevel must be the last pre-tokenizer step");
  }
  check_decoder(root);
  const auto added = root.find("added_tokens");
  if (added != root.end() && !added->is_null()) load_added_tokens(*added);
  build_id_tables();
}

// Parts of a tokenizer.json that would change the ids, which this tokenizer does not do.
// (A post_processor only adds tokens when asked to add special tokens, which encode never
// does, so any is accepted.)
void Tokenizer::Impl::check_unsupported(const json& root) const {
  const auto version = root.find("version");
  if (version != root.end() && *version != "1.0") {
    fail(path, "version", "unknown tokenizer.json version ", describe(*version),
         " (expected \"1.0\")");
  }
  if (!null_or_absent(root, "normalizer")) {
    fail(path, "normalizer", "normalizers are not supported; expected null, found ",
         describe(root["normalizer"]));
  }
  require(null_or_absent(root, "truncation"), path, "truncation",
          "truncation is not supported; expected null");
  require(null_or_absent(root, "padding"), path, "padding",
          "padding is not supported; expected null");
}

void Tokenizer::Impl::load_pre_tokenizer(const json& node, const std::string& field) {
  const std::string type = string_member(node, "type", path, field);
  if (type == "Sequence") {
    const json& list = member(node, "pretokenizers", path, field);
    require(list.is_array(), path, field + ".pretokenizers", "expected an array");
    for (size_t i = 0; i < list.size(); ++i) {
      load_pre_tokenizer(list[i], cat(field, ".pretokenizers[", i, "]"));
    }
  } else if (type == "Split") {
    PreTokenizerStep step;
    const json& pattern = member(node, "pattern", path, field);
    const std::string pattern_field = field + ".pattern";
    if (pattern.is_object() && pattern.contains("Regex")) {
      const std::string source = string_member(pattern, "Regex", path, pattern_field);
      step.regex = std::make_shared<const Regex>(
          onig_to_pcre2(source, path, pattern_field + ".Regex"), false, path,
          pattern_field + ".Regex");
    } else if (pattern.is_object() && pattern.contains("String")) {
      const std::string literal = string_member(pattern, "String", path, pattern_field);
      require(!literal.empty(), path, pattern_field + ".String", "must not be empty");
      step.regex = std::make_shared<const Regex>(literal, true, path, pattern_field + ".String");
    } else {
      fail(path, pattern_field, "expected {\"Regex\": ...} or {\"String\": ...}, found ",
           describe(pattern));
    }
    const std::string behavior = string_member(node, "behavior", path, field);
    if (behavior == "Removed") {
      step.behavior = SplitBehavior::Removed;
    } else if (behavior == "Isolated") {
      step.behavior = SplitBehavior::Isolated;
    } else {
      fail(path, field + ".behavior", "unsupported Split behavior '", behavior,
           "' (supported: Removed, Isolated)");
    }
    step.invert = bool_member(node, "invert", false, path, field);
    steps.push_back(std::move(step));
  } else if (type == "ByteLevel") {
    // HF's ByteLevel first splits with GPT-2's regex when use_regex (default true), then
    // maps bytes to the alphabet; the mapping happens in tokenize_piece.
    if (bool_member(node, "use_regex", true, path, field)) {
      PreTokenizerStep split;
      split.regex = std::make_shared<const Regex>(
          onig_to_pcre2(kByteLevelPattern, path, field), false, path, field);
      split.behavior = SplitBehavior::Isolated;
      PreTokenizerStep prefix;
      prefix.add_prefix_space = bool_member(node, "add_prefix_space", true, path, field);
      if (prefix.add_prefix_space) steps.push_back(prefix);
      steps.push_back(std::move(split));
    } else if (bool_member(node, "add_prefix_space", true, path, field)) {
      PreTokenizerStep prefix;
      prefix.add_prefix_space = true;
      steps.push_back(prefix);
    }
    PreTokenizerStep mapping;
    mapping.byte_level = true;
    steps.push_back(mapping);
  } else {
    fail(path, field + ".type", "unsupported pre-tokenizer type '", type,
         "' (supported: Sequence, Split, ByteLevel)");
  }
}

void Tokenizer::Impl::load_model(const json& model) {
  const std::string type = string_member(model, "type", path, "model");
  require(type == "BPE", path, "model.type", "unsupported model type '", type,
          "' (supported: BPE)");
  const auto dropout = model.find("dropout");
  if (dropout != model.end() && !dropout->is_null() && *dropout != 0.0) {
    fail(path, "model.dropout", "BPE dropout is random; expected null, found ",
         describe(*dropout));
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const auto it = model.find(key);
    if (it != model.end() && !it->is_null() && *it != "") {
      fail(path, cat("model.", key), "not supported by a byte-level BPE; expected null or"
           " \"\", found ", describe(*it));
    }
  }
  ignore_merges = bool_member(model, "ignore_merges", false, path, "model");

  const json& vocab_json = member(model, "vocab", path, "model");
  require(vocab_json.is_object(), path, "model.vocab", "expected an object of token: id");
  vocab.reserve(vocab_json.size());
  for (auto it = vocab_json.begin(); it != vocab_json.end(); ++it) {
    const json& id = it.value();
    if (!id.is_number_integer() || id.get<int64_t>() < 0 ||
        id.get<int64_t>() >= std::numeric_limits<int32_t>::max()) {
      fail(path, cat("model.vocab[\"", it.key(), "\"]"),
           "expected an id in [0, 2^31 - 1), found ", describe(id));
    }
    vocab.emplace(it.key(), id.get<int32_t>());
  }

  // Every byte must have its symbol: then no character is ever unknown, so unk_token,
  // fuse_unk and byte_fallback (HF's ways of handling unknown characters) never apply.
  const std::array<char32_t, 256> alphabet = bytes_to_unicode();
  for (int b = 0; b < 256; ++b) {
    std::string symbol;
    append_utf8(symbol, alphabet[b]);
    const auto it = vocab.find(symbol);
    require(it != vocab.end(), path, "model.vocab", "the byte-level symbol '", symbol,
            "' of byte ", b, " is missing");
    byte_ids[b] = it->second;
  }
  load_merges(member(model, "merges", path, "model"));
}

// Merges are "left right" strings (a line starting with "#version" is skipped) or, in
// newer files, [left, right] pairs; a merge's rank is its index (HF bpe/serialization.rs).
void Tokenizer::Impl::load_merges(const json& list) {
  require(list.is_array(), path, "model.merges", "expected an array");
  merges.reserve(list.size());
  uint32_t rank = 0;
  std::string left, right, merged;
  for (size_t i = 0; i < list.size(); ++i) {
    const json& entry = list[i];
    const auto field = [i] { return cat("model.merges[", i, "]"); };  // only on errors
    if (entry.is_string()) {
      const std::string& line = entry.get_ref<const std::string&>();
      if (line.rfind("#version", 0) == 0) continue;
      const size_t space = line.find(' ');
      if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos) {
        fail(path, field(), "expected two tokens separated by one space, found ",
             describe(entry));
      }
      left.assign(line, 0, space);
      right.assign(line, space + 1);
    } else if (entry.is_array() && entry.size() == 2 && entry[0].is_string() &&
               entry[1].is_string()) {
      left = entry[0].get_ref<const std::string&>();
      right = entry[1].get_ref<const std::string&>();
    } else {
      fail(path, field(), "expected \"left right\" or [\"left\", \"right\"], found ",
           describe(entry));
    }
    merged.assign(left).append(right);
    const auto a = vocab.find(left), b = vocab.find(right), ab = vocab.find(merged);
    if (a == vocab.end()) fail(path, field(), "'", left, "' is not in model.vocab");
    if (b == vocab.end()) fail(path, field(), "'", right, "' is not in model.vocab");
    if (ab == vocab.end()) {
      fail(path, field(), "the merged token '", merged, "' is not in model.vocab");
    }
    merges.insert(a->second, b->second, rank++, ab->second);
  }
}

// Ids as HF's AddedVocabulary assigns them when it reads the file: an added token that is
// in the model's vocabulary takes the model's id, a new one the next id after the model's
// (HF then ignores the "id" written in the file). A file whose ids disagree with that is
// rejected, so neither the file nor HF is silently contradicted.
void Tokenizer::Impl::load_added_tokens(const json& list) {
  require(list.is_array(), path, "added_tokens", "expected an array");
  std::vector<AddedToken> tokens;
  int32_t next_id = static_cast<int32_t>(vocab.size());
  bool any_single_word = false;
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string field = cat("added_tokens[", i, "]");
    const json& entry = list[i];
    AddedToken token;
    token.content = string_member(entry, "content", path, field);
    const json& id = member(entry, "id", path, field);
    require(id.is_number_integer(), path, field + ".id", "expected an integer id");
    token.single_word = bool_member(entry, "single_word", false, path, field);
    token.lstrip = bool_member(entry, "lstrip", false, path, field);
    token.rstrip = bool_member(entry, "rstrip", false, path, field);
    token.normalized = bool_member(entry, "normalized", true, path, field);
    token.special = bool_member(entry, "special", false, path, field);
    if (token.content.empty()) continue;  // HF ignores empty added tokens
    if (const auto known = token_to_id(token.content)) {
      token.id = *known;
    } else {
      token.id = next_id++;
    }
    if (id.get<int64_t>() != token.id) {
      fail(path, field + ".id", "'", token.content, "' has id ", describe(id),
           " but Hugging Face tokenizers would give it ", token.id);
    }
    any_single_word |= token.single_word;
    added_vocab.emplace(token.content, token.id);
    tokens.push_back(std::move(token));
  }
  // Rust regex's Unicode \w, which single_word checks the neighbours against.
  std::shared_ptr<const Regex> word_char;
  if (any_single_word) {
    word_char = std::make_shared<const Regex>(
        R"([\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}])", false, path, "added_tokens");
  }
  raw_tokens = AddedTokenMatcher(tokens, false, word_char);
  normalized_tokens = AddedTokenMatcher(tokens, true, word_char);
  added_tokens = std::move(tokens);
}

void Tokenizer::Impl::check_decoder(const json& root) const {
  const auto decoder = root.find("decoder");
  require(decoder != root.end() && !decoder->is_null(), path, "decoder",
          "a byte-level BPE needs the ByteLevel decoder, found none");
  const std::string type = string_member(*decoder, "type", path, "decoder");
  require(type == "ByteLevel", path, "decoder.type", "unsupported decoder type '", type,
          "' (supported: ByteLevel)");
}

// id -> token string, specialness and decoded bytes, for id_to_token and decode.
void Tokenizer::Impl::build_id_tables() {
  int32_t size = 0;
  for (const auto& [token, id] : vocab) size = std::max(size, id + 1);
  for (const auto& [token, id] : added_vocab) size = std::max(size, id + 1);
  tokens.assign(size, std::string());
  has_token.assign(size, false);
  special.assign(size, false);
  for (const auto& [token, id] : vocab) {
    if (has_token[id]) {
      fail(path, "model.vocab", "id ", id, " is given to both '", tokens[id], "' and '", token,
           "'");
    }
    tokens[id] = token;
    has_token[id] = true;
  }
  // Added tokens win over the model's vocabulary, as in HF's id_to_token.
  for (const auto& [token, id] : added_vocab) {
    tokens[id] = token;
    has_token[id] = true;
  }
  for (const AddedToken& token : added_tokens) {
    if (token.special) special[token.id] = true;
  }

  // HF's ByteLevel decoder: a token made only of alphabet characters stands for those
  // bytes; any other token (an added token with a space, say) for its own UTF-8 bytes.
  std::array<int, 0x144> char_to_byte;
  char_to_byte.fill(-1);
  const std::array<char32_t, 256> alphabet = bytes_to_unicode();
  for (int b = 0; b < 256; ++b) char_to_byte[alphabet[b]] = b;
  decoded_at.assign(size + 1, 0);
  std::string bytes;
  for (int32_t id = 0; id < size; ++id) {
    decoded_at[id] = static_cast<uint32_t>(decoded.size());
    const std::string& token = tokens[id];
    bytes.clear();
    bool all_alphabet = true;
    for (size_t i = 0; i < token.size() && all_alphabet;) {
      size_t length = 0;
      const char32_t cp = decode_utf8_at(token, i, &length);
      all_alphabet = cp < char_to_byte.size() && char_to_byte[cp] >= 0;
      if (all_alphabet) bytes += static_cast<char>(char_to_byte[cp]);
      i += length;
    }
    decoded += all_alphabet ? bytes : token;
  }
  decoded_at[size] = static_cast<uint32_t>(decoded.size());
}

// ---- encoding --------------------------------------------------------------------------

void Tokenizer::Impl::encode(std::string_view text, std::vector<int32_t>& out) const {
  if (const auto bad = first_invalid_utf8(text)) {
    fail(path, "text", "invalid UTF-8 at byte offset ", *bad, " (byte 0x", std::hex,
         static_cast<int>(static_cast<unsigned char>(text[*bad])), ")");
  }
  const auto push_token = [&out](int32_t id) { out.push_back(id); };
  raw_tokens.split(
      text,
      [&](std::string_view gap) {
        normalized_tokens.split(
            gap, [&](std::string_view rest) { pre_tokenize(0, rest, out); }, push_token);
      },
      push_token);
}

// Runs pre-tokenizer steps[step..] on `piece` and the model on what they produce.
// Recursion keeps every piece a view into the caller's text: nothing is copied unless a
// ByteLevel step has to prepend a space.
void Tokenizer::Impl::pre_tokenize(size_t step, std::string_view piece,
                                   std::vector<int32_t>& out) const {
  if (piece.empty()) return;  // HF drops empty splits
  const PreTokenizerStep& s = steps[step];
  if (s.byte_level) {
    tokenize_piece(piece, out);
  } else if (s.add_prefix_space) {
    if (piece.front() == ' ') {
      pre_tokenize(step + 1, piece, out);
    } else {
      std::string spaced;
      spaced.reserve(piece.size() + 1);
      spaced += ' ';
      spaced += piece;
      pre_tokenize(step + 1, spaced, out);
    }
  } else {
    // Split: Removed keeps the matches when inverted and the gaps otherwise (HF flips
    // the match flags for invert, then drops what is flagged); Isolated keeps both.
    const bool keep_matches = s.behavior == SplitBehavior::Isolated || s.invert;
    const bool keep_gaps = s.behavior == SplitBehavior::Isolated || !s.invert;
    s.regex->for_each_split(piece, [&](size_t begin, size_t end, bool is_match) {
      if (is_match ? keep_matches : keep_gaps) {
        pre_tokenize(step + 1, piece.substr(begin, end - begin), out);
      }
    });
  }
}

// The BPE model on one piece (HF models/bpe/model.rs tokenize_with_cache).
void Tokenizer::Impl::tokenize_piece(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.size() == 1) {  // one byte, one symbol: nothing to merge or cache
    out.push_back(byte_ids[static_cast<unsigned char>(piece[0])]);
    return;
  }
  if (ignore_merges) {
    // A piece that is itself a token is emitted whole, without merging.
    std::string& mapped = merge_scratch().text;
    mapped.clear();
    static const std::array<char32_t, 256> alphabet = bytes_to_unicode();
    for (unsigned char b : piece) append_utf8(mapped, alphabet[b]);
    if (const auto it = vocab.find(mapped); it != vocab.end()) {
      out.push_back(it->second);
      return;
    }
  }
  const bool use_cache = cache.enabled() && piece.size() <= PieceCache::kMaxPieceBytes;
  const size_t hash = use_cache ? PieceCache::hash(piece) : 0;
  if (use_cache && cache.find(piece, hash, out)) return;
  const size_t first = out.size();
  if (options.naive_merges) {
    merge_naively(piece, out);
  } else if (piece.size() <= kShortPiece) {
    merge_short(piece, out);
  } else {
    merge_with_heap(piece, out);
  }
  if (use_cache) cache.insert(piece, hash, out.data() + first, out.size() - first);
}

// Most pieces are a few bytes long. For them a flat array of the adjacent pairs' ranks,
// scanned for its minimum, beats a heap: the scan is a few compares in one cache line and
// each merge looks up only the two pairs it creates. The result is the same, since both
// merge the lowest-rank pair, leftmost on ties, until none is left.
void Tokenizer::Impl::merge_short(std::string_view piece, std::vector<int32_t>& out) const {
  constexpr uint32_t kNone = std::numeric_limits<uint32_t>::max();
  int32_t ids[kShortPiece];
  uint32_t ranks[kShortPiece];   // ranks[i]: rank of merging ids[i] and ids[i + 1]
  int32_t merged[kShortPiece];   // merged[i]: the id that merge gives
  size_t n = piece.size();
  for (size_t i = 0; i < n; ++i) ids[i] = byte_ids[static_cast<unsigned char>(piece[i])];
  const auto look_up = [&](size_t i) {
    const MergeTable::Merge* merge = merges.find(ids[i], ids[i + 1]);
    ranks[i] = merge ? merge->rank : kNone;
    merged[i] = merge ? merge->merged : -1;
  };
  for (size_t i = 0; i + 1 < n; ++i) look_up(i);
  while (n > 1) {
    size_t best = 0;
    for (size_t i = 1; i + 1 < n; ++i) {
      if (ranks[i] < ranks[best]) best = i;
    }
    if (ranks[best] == kNone) break;
    ids[best] = merged[best];
    // Close the gap left by ids[best + 1]; pairs after the merged one shift down by one.
    const size_t tail = n - best - 2;
    std::memmove(ids + best + 1, ids + best + 2, tail * sizeof ids[0]);
    std::memmove(ranks + best + 1, ranks + best + 2, tail * sizeof ranks[0]);
    std::memmove(merged + best + 1, merged + best + 2, tail * sizeof merged[0]);
    --n;
    if (best > 0) look_up(best - 1);
    if (best + 1 < n) look_up(best);
  }
  out.insert(out.end(), ids, ids + n);
}

// HF's Word::merge_all: a min-heap of candidate merges ordered by (rank, position) over a
// linked list of symbols. A popped candidate whose symbols have changed since it was
// pushed is stale and skipped; each merge pushes the two pairs it creates. O(n log n).
void Tokenizer::Impl::merge_with_heap(std::string_view piece, std::vector<int32_t>& out) const {
  MergeScratch& scratch = merge_scratch();
  auto& symbols = scratch.symbols;
  auto& heap = scratch.heap;
  const int32_t n = static_cast<int32_t>(piece.size());
  symbols.resize(n);
  for (int32_t i = 0; i < n; ++i) {
    symbols[i] = {byte_ids[static_cast<unsigned char>(piece[i])], i - 1, i + 1 < n ? i + 1 : -1};
  }
  const auto later = [](const MergeScratch::Candidate& a, const MergeScratch::Candidate& b) {
    return a.order > b.order;
  };
  const auto push_candidate = [&](int32_t pos, int32_t next) {
    const int32_t left = symbols[pos].id, right = symbols[next].id;
    if (const MergeTable::Merge* merge = merges.find(left, right)) {
      heap.push_back({(uint64_t{merge->rank} << 32) | static_cast<uint32_t>(pos), left, right,
                      merge->merged});
      std::push_heap(heap.begin(), heap.end(), later);
    }
  };
  heap.clear();
  for (int32_t i = 0; i + 1 < n; ++i) push_candidate(i, i + 1);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    const MergeScratch::Candidate top = heap.back();
    heap.pop_back();
    const int32_t pos = static_cast<int32_t>(top.order & 0xFFFFFFFFu);
    MergeScratch::Symbol& left = symbols[pos];
    if (left.id != top.left || left.next < 0 || symbols[left.next].id != top.right) continue;
    const int32_t next = symbols[left.next].next;
    symbols[left.next].id = -1;
    left.id = top.merged;
    left.next = next;
    if (next >= 0) symbols[next].prev = pos;
    if (left.prev >= 0) push_candidate(left.prev, pos);
    if (next >= 0) push_candidate(pos, next);
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next) out.push_back(symbols[i].id);
}

// The textbook loop: find the lowest-rank adjacent pair (leftmost on ties), merge it,
// rescan. Same result as merge_with_heap; kept as the benchmark's baseline.
void Tokenizer::Impl::merge_naively(std::string_view piece, std::vector<int32_t>& out) const {
  std::vector<int32_t>& ids = merge_scratch().ids;
  ids.clear();
  for (unsigned char b : piece) ids.push_back(byte_ids[b]);
  while (ids.size() > 1) {
    const MergeTable::Merge* best = nullptr;
    size_t best_pos = 0;
    for (size_t i = 0; i + 1 < ids.size(); ++i) {
      const MergeTable::Merge* merge = merges.find(ids[i], ids[i + 1]);
      if (merge && (!best || merge->rank < best->rank)) {
        best = merge;
        best_pos = i;
      }
    }
    if (!best) break;
    ids[best_pos] = best->merged;
    ids.erase(ids.begin() + static_cast<std::ptrdiff_t>(best_pos) + 1);
  }
  out.insert(out.end(), ids.begin(), ids.end());
}

std::optional<int32_t> Tokenizer::Impl::token_to_id(std::string_view token) const {
  const std::string key(token);
  if (const auto it = added_vocab.find(key); it != added_vocab.end()) return it->second;
  if (const auto it = vocab.find(key); it != vocab.end()) return it->second;
  return std::nullopt;
}

bool Tokenizer::Impl::is_valid_id(int32_t id) const {
  return id >= 0 && id < static_cast<int32_t>(tokens.size()) && has_token[id];
}

void Tokenizer::Impl::fail_id(int32_t id, const std::string& field) const {
  if (id < 0 || id >= static_cast<int32_t>(tokens.size())) {
    fail(path, field, "id ", id, " is out of range [0, ", tokens.size(), ")");
  }
  fail(path, field, "no token has id ", id);
}

// =======================================================================================

Tokenizer::Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}

Tokenizer Tokenizer::load(const std::string& path, const TokenizerOptions& options) {
  const std::string file = resolve_path(path);
  auto impl = std::make_shared<Impl>(file, options);
  try {
    impl->load(read_json_file(file));
  } catch (const json::exception& e) {  // a field of an unexpected JSON type the checks missed
    fail(file, "", "unexpected value: ", e.what());
  }
  return Tokenizer(std::move(impl));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  impl_->encode(text, ids);
  return ids;
}

void Tokenizer::encode_append(std::string_view text, std::vector<int32_t>& out) const {
  impl_->encode(text, out);
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  const Impl& impl = *impl_;
  std::string bytes;
  bytes.reserve(ids.size() * 4);
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    if (!impl.is_valid_id(id)) impl.fail_id(id, cat("ids[", i, "]"));
    if (skip_special_tokens && impl.special[id]) continue;
    bytes.append(impl.decoded, impl.decoded_at[id], impl.decoded_at[id + 1] - impl.decoded_at[id]);
  }
  return utf8_lossy(std::move(bytes));
}

int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(impl_->tokens.size()); }

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  return impl_->token_to_id(token);
}

std::string Tokenizer::id_to_token(int32_t id) const {
  if (!impl_->is_valid_id(id)) impl_->fail_id(id, "id");
  return impl_->tokens[id];
}

bool Tokenizer::is_special(int32_t id) const {
  if (!impl_->is_valid_id(id)) impl_->fail_id(id, "id");
  return impl_->special[id];
}

std::optional<int32_t> Tokenizer::eos_id() const { return token_to_id("<|endoftext|>"); }

std::optional<int32_t> Tokenizer::pad_id() const { return token_to_id("<|pad|>"); }

const std::string& Tokenizer::path() const { return impl_->path; }

}  // namespace emo
