// core/text/tokenizer against Hugging Face `tokenizers` itself (the Rust library through its
// Python binding from PyPI, pinned; tests/reference/tokenize_ref.py): the same ids on the whole corpus, GSM8K
// and a list of awkward strings, for both shipped tokenizers and for variants of their
// tokenizer.json that exercise the other supported settings; the same decoded text;
// exact round trips; and the errors bad input gets.
#include <catch2/catch.hpp>

#include <zlib.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>

#include "core/text/tokenizer.h"
#include "core/util/error.h"
#include "test_util.h"

using emo::Tokenizer;
using emo::TokenizerOptions;
using nlohmann::json;
namespace fs = std::filesystem;
using IdLists = std::vector<std::vector<int32_t>>;

namespace {

fs::path tokenizer_json(const std::string& name) {
  return emo::test::data_dir() / "tokenizers" / name / "tokenizer.json";
}

fs::path corpus_file(const std::string& split) {
  return emo::test::data_dir() / "corpus" / (split + ".jsonl.gz");
}

fs::path gsm8k_file() { return emo::test::data_dir() / "gsm8k" / "train.jsonl"; }

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

void write_file(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
  REQUIRE(out.good());
}

// The texts of a JSONL file, gzipped or not, in the order tokenize_ref.py reads them: a
// line's "text", or its "question" then its "answer".
std::vector<std::string> read_texts(const fs::path& path) {
  gzFile file = gzopen(path.string().c_str(), "rb");
  REQUIRE(file != nullptr);
  std::vector<std::string> texts;
  std::string line;
  char buffer[1 << 16];
  const auto take_line = [&] {
    if (line.find_first_not_of(" \t\r\n") == std::string::npos) return;
    const json record = json::parse(line);
    if (record.contains("text")) {
      texts.push_back(record.at("text").get<std::string>());
    } else {
      texts.push_back(record.at("question").get<std::string>());
      texts.push_back(record.at("answer").get<std::string>());
    }
  };
  while (gzgets(file, buffer, sizeof buffer)) {
    line += buffer;
    if (line.back() == '\n') {
      take_line();
      line.clear();
    }
  }
  gzclose(file);
  take_line();
  REQUIRE(!texts.empty());
  return texts;
}

void write_texts(const fs::path& path, const std::vector<std::string>& texts) {
  std::string lines;
  for (const std::string& text : texts) lines += json{{"text", text}}.dump() + "\n";
  write_file(path, lines);
}

// ---- the reference -------------------------------------------------------------------

std::string shell_quote(const std::string& s) {
  std::string quoted = "'";
  for (char c : s) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

// Runs tests/reference/tokenize_ref.py; a missing reference environment fails the test.
void run_reference(const emo::test::TempDir& dir, const std::vector<std::string>& args) {
  if (!emo::test::have_reference_venv()) FAIL(emo::test::reference_install_hint());
  std::string command = shell_quote(emo::test::reference_tool("python").string()) + " " +
                        shell_quote((emo::test::source_dir() / "tests/reference/tokenize_ref.py").string());
  for (const std::string& arg : args) command += " " + shell_quote(arg);
  const fs::path errors = dir / "reference.stderr";
  command += " 2>" + shell_quote(errors.string());
  if (std::system(command.c_str()) != 0) {
    FAIL("the reference failed: " << command << "\n" << read_file(errors));
  }
}

uint32_t read_u32(const std::string& bytes, size_t at) {
  uint32_t value;
  std::memcpy(&value, bytes.data() + at, 4);  // little-endian, as the script writes
  return value;
}

IdLists read_id_lists(const fs::path& path) {
  const std::string bytes = read_file(path);
  IdLists lists;
  for (size_t at = 0; at < bytes.size();) {
    const uint32_t count = read_u32(bytes, at);
    REQUIRE(at + 4 + 4 * size_t{count} <= bytes.size());
    std::vector<int32_t> ids(count);
    if (count > 0) std::memcpy(ids.data(), bytes.data() + at + 4, 4 * size_t{count});
    lists.push_back(std::move(ids));
    at += 4 + 4 * size_t{count};
  }
  return lists;
}

void write_id_lists(const fs::path& path, const IdLists& lists) {
  std::string bytes;
  for (const auto& ids : lists) {
    const uint32_t count = static_cast<uint32_t>(ids.size());
    bytes.append(reinterpret_cast<const char*>(&count), 4);
    if (!ids.empty()) bytes.append(reinterpret_cast<const char*>(ids.data()), 4 * ids.size());
  }
  write_file(path, bytes);
}

// HF's ids for every text of `texts_file` (JSONL), without special tokens.
IdLists reference_encode(const fs::path& tokenizer, const fs::path& texts_file) {
  emo::test::TempDir dir;
  run_reference(dir, {"encode", tokenizer.string(), texts_file.string(),
                      (dir / "ids.bin").string()});
  return read_id_lists(dir / "ids.bin");
}

IdLists reference_encode(const fs::path& tokenizer, const std::vector<std::string>& texts) {
  emo::test::TempDir dir;
  write_texts(dir / "texts.jsonl", texts);
  return reference_encode(tokenizer, dir / "texts.jsonl");
}

std::vector<std::string> reference_decode(const fs::path& tokenizer, const IdLists& lists,
                                          bool skip_special) {
  emo::test::TempDir dir;
  write_id_lists(dir / "ids.bin", lists);
  std::vector<std::string> args = {"decode", tokenizer.string(), (dir / "ids.bin").string(),
                                   (dir / "texts.bin").string()};
  if (skip_special) args.push_back("--skip-special");
  run_reference(dir, args);
  const std::string bytes = read_file(dir / "texts.bin");
  std::vector<std::string> texts;
  for (size_t at = 0; at < bytes.size();) {
    const uint32_t length = read_u32(bytes, at);
    texts.push_back(bytes.substr(at + 4, length));
    at += 4 + length;
  }
  return texts;
}

// ---- comparing -----------------------------------------------------------------------

std::string spell(const Tokenizer& tokenizer, const std::vector<int32_t>& ids, size_t from) {
  std::string out;
  for (size_t i = from; i < ids.size() && i < from + 8; ++i) {
    out += (i > from ? " " : "") + std::to_string(ids[i]) + ":" +
           json(tokenizer.id_to_token(ids[i])).dump();
  }
  return out;
}

// "" when every text got the reference's ids; otherwise how many did not and where the
// first one goes wrong, with the tokens spelled out.
std::string compare_ids(const Tokenizer& tokenizer, const std::vector<std::string>& texts,
                        const IdLists& ours, const IdLists& reference) {
  if (ours.size() != reference.size()) {
    return emo::cat(ours.size(), " texts encoded but the reference has ", reference.size());
  }
  size_t differing = 0, first = 0;
  for (size_t d = 0; d < ours.size(); ++d) {
    if (ours[d] != reference[d] && differing++ == 0) first = d;
  }
  if (differing == 0) return "";
  const auto& a = ours[first];
  const auto& b = reference[first];
  size_t at = 0;
  while (at < a.size() && at < b.size() && a[at] == b[at]) ++at;
  return emo::cat(differing, " of ", ours.size(), " texts differ; the first is text ", first,
                  " ", json(texts[first].substr(0, 200)).dump(), " at id ", at,
                  "\n  ours:      ", spell(tokenizer, a, at),
                  "\n  reference: ", spell(tokenizer, b, at));
}

IdLists encode_all(const Tokenizer& tokenizer, const std::vector<std::string>& texts) {
  IdLists lists;
  lists.reserve(texts.size());
  for (const std::string& text : texts) lists.push_back(tokenizer.encode(text));
  return lists;
}

// Index and text of the first text that does not survive encode + decode; "" if none.
std::string first_round_trip_failure(const Tokenizer& tokenizer,
                                     const std::vector<std::string>& texts) {
  for (size_t i = 0; i < texts.size(); ++i) {
    if (tokenizer.decode(tokenizer.encode(texts[i])) != texts[i]) {
      return emo::cat("text ", i, ": ", json(texts[i].substr(0, 200)).dump());
    }
  }
  return "";
}

// The vocabulary's token for a lone byte: GPT-2's bytes_to_unicode, written out again
// here so that the test does not lean on the code it checks.
std::string byte_symbol(int byte) {
  const auto printable = [](int b) {
    return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
  };
  int code = byte;
  if (!printable(byte)) {
    code = 256;
    for (int b = 0; b < byte; ++b) code += printable(b) ? 0 : 1;
  }
  std::string utf8;
  if (code < 0x80) {
    utf8 += static_cast<char>(code);
  } else {
    utf8 += static_cast<char>(0xC0 | (code >> 6));
    utf8 += static_cast<char>(0x80 | (code & 0x3F));
  }
  return utf8;
}

// ---- the awkward strings ---------------------------------------------------------------

std::string repeat(const std::string& s, size_t times) {
  std::string out;
  for (size_t i = 0; i < times; ++i) out += s;
  return out;
}

const std::vector<std::string>& nasty_strings() {
  static const std::vector<std::string> strings = [] {
    std::vector<std::string> s = {
        "", "Hello world", " leading", "trailing ", "  two  spaces  ", "a", " ", "\n",
        // every kind of whitespace, alone, in runs and between words
        "\t", "\r", "\r\n", "\v", "\f", "a\vb", "a\fb", "\xC2\x85", "a\xC2\x85" "b",
        "\xC2\xA0", "x\xC2\xA0\xC2\xA0\xC2\xA0y", "\xE1\x9A\x80", "\xE1\xA0\x8E",
        "a\xE1\xA0\x8E\xE1\xA0\x8E!", "\xE2\x80\x80", "\xE2\x80\x83", "\xE2\x80\x8A",
        "\xE2\x80\x8B", "a\xE2\x80\x8B" "b", "\xE2\x80\xA8", "a\xE2\x80\xA9" "b",
        "\xE2\x80\xAF", "\xE2\x81\x9F", "\xE3\x80\x80", "a\xE3\x80\x80\xE3\x80\x80" "b",
        "\xEF\xBB\xBF" "bom", "\x1C\x1D\x1E\x1F", "a \t \n \r\n  \xE3\x80\x80\xC2\xA0" "b",
        "   \n\n\n   ", "\n \n", "line1\r\nline2\r\n\r\n", "\t\t\tindented", "word   ",
        "word   \n", "word \n\n  next", "a\n\n\n\nb", "  \t", "\r\r\n\n", "x \r\n y",
        // digits
        "1234567", "1 23 456 7890", "3.14159", "-42", "1,000,000", "2024-01-31",
        "\xD9\xA1\xD9\xA2\xD9\xA3\xD9\xA4\xD9\xA5", "\xE2\x91\xA0\xE2\x91\xA1\xE2\x91\xA2",
        "\xC2\xBD\xC2\xBC", "\xE2\x85\xAB", "\xF0\x9D\x9F\x99\xF0\x9D\x9F\x9A",
        "\xEF\xBC\x90\xEF\xBC\x91\xEF\xBC\x92\xEF\xBC\x93", "x2", "2x", "a1b2c3",
        // contractions, any case
        "I'm you're he's she'd we'll they've don't", "I'M YOU'RE HE'S SHE'D WE'LL THEY'VE DON'T",
        "'S 'T 'RE 'VE 'M 'LL 'D", "'s't're've'm'll'd", "x'\xC5\xBF" "a", "it\xE2\x80\x99s",
        "''s", "'sss", "'", "''", " 's", "'\n", "O'Neil's", "'LLama", "'Dog",
        // letters from everywhere
        "na\xC3\xAFve caf\xC3\xA9", "e\xCC\x81", "a\xCC\x80\xCC\x81\xCC\x82\xCC\x83",
        "Z\xCC\xA4\xCD\x94\xCD\xA7\xCC\x91\xCC\x93" "a\xCD\x96\xCC\xAD\xCC\x88\xCC\x87",
        "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xAE\xE3\x83\x86\xE3\x82\xAD\xE3\x82\xB9"
        "\xE3\x83\x88",
        "\xE4\xB8\xAD\xE6\x96\x87\xEF\xBC\x8C\xE6\xA0\x87\xE7\x82\xB9\xE3\x80\x82",
        "\xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4 \xED\x85\x8D\xEC\x8A\xA4\xED\x8A\xB8",
        "\xE0\xB8\xA0\xE0\xB8\xB2\xE0\xB8\xA9\xE0\xB8\xB2\xE0\xB9\x84\xE0\xB8\x97\xE0\xB8\xA2",
        "\xE0\xA4\xB9\xE0\xA4\xBF\xE0\xA4\xA8\xE0\xA5\x8D\xE0\xA4\xA6\xE0\xA5\x80",
        "\xD8\xA7\xD9\x84\xD8\xB9\xD8\xB1\xD8\xA8\xD9\x8A\xD8\xA9",
        "abc \xD7\xA2\xD7\x91\xD7\xA8\xD7\x99\xD7\xAA def", "\xE2\x80\xAE" "abc\xE2\x80\xAC",
        "\xE2\x80\x8D", "\xF0\x9F\x99\x82", "\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD",
        "\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7\xE2\x80\x8D"
        "\xF0\x9F\x91\xA6",
        "\xF0\x9F\x87\xBA\xF0\x9F\x87\xB8\xF0\x9F\x87\xAB\xF0\x9F\x87\xB7",
        "1\xEF\xB8\x8F\xE2\x83\xA3",
        "\xE2\x9D\xA4\xEF\xB8\x8F", "\xF0\x9F\x8F\xB3\xEF\xB8\x8F\xE2\x80\x8D\xF0\x9F\x8C\x88",
        "\xE2\x88\x80x\xE2\x88\x88\xE2\x84\x9D: x\xC2\xB2\xE2\x89\xA5" "0",
        "\xF0\x9D\x95\xB3\xF0\x9D\x96\x8A\xF0\x9D\x96\x91",
        "\xEF\xAC\x81 \xEF\xAC\x80 \xEF\xAC\x86",
        "\xC7\x85", "\xC3\x9F SS \xE1\xBA\x9E", "\xC4\xB0\xC4\xB1", "\xE2\x84\xAA \xE2\x84\xAB",
        "\xEE\x80\x80", "\xEF\xBF\xBF", "\xF4\x8F\xBF\xBF", "\xF0\x9F\xA7\xBF", "\xEF\xBF\xBD",
        std::string("a\0b", 3), "\x01\x02\x7F", "\xC2\x80\xC2\x9F",
        // code, markup, punctuation
        "def f(x):\n    return x**2  # comment\n", "if (a && b) { c++; }",
        "http://example.com/path?q=1&r=2", "user@example.com", "<html><body>Hi</body></html>",
        "{\"json\": [1, 2, 3]}", "$$\\frac{a}{b}$$", "C:\\path\\file.txt", "----====****",
        "!!!???...", "\xE2\x80\xA6", "\xC2\xAB" "quotes\xC2\xBB \xE2\x80\x9C" "curly\xE2\x80\x9D",
        "\xE2\x80\x94\xE2\x80\x93-", "###", "@@@", "a.b.c", "..\n", " !!\n\n",
        // added tokens: whole, adjacent, repeated, partial, lookalike
        "<|endoftext|>", "a<|endoftext|>b", "<|endoftext|><|endoftext|>", " <|endoftext|> ",
        "Hello<|endoftext|>", "<|endoftext|>Hello", "<|endof", "<|endoftext|", "<|endoftext",
        "<|pad|>", "<|padding|>", "<<|endoftext|>>", "<|endoftext|>\n\n",
        "text  <|endoftext|>  text", "<|ENDOFTEXT|>", "<|endoftext|>'s",
        "<|fim_prefix|>x<|fim_middle|>y<|fim_suffix|>", "<|extra_id_0|>", "<|extra_id_10|>",
        "<|extra_id_1|>0", "<|endofprompt|>", "<|extra_id_1", "\n<|endoftext|>\n",
        // the added tokens of the variant tokenizer (flags lstrip, rstrip, single_word)
        "a <mask> b", "x   <mask>", "\xC2\xA0<mask>\xE3\x80\x80", "<mask><mask>", "[SEP]   y",
        "[SEP]\n\nz", "a word b", "awordb", "word", "words", "_word_", "(word)", "word.",
        "n\xC3\xA9" "e", "an\xC3\xA9" "e", "n\xC3\xA9" "e.", "<|endoftext|>x", "<|endoftext|>xx",
        "tok tokens tok", "  <mask>  [SEP]  ", "word\xCC\x81", "\xE2\x80\x8Dword",
        // (?m) and ^ in the variant Split
        "a\nb\nc", "\n\n", " x\n y",
    };
    // Long pieces: they take the heap-ordered merge loop, not the short-piece one.
    s.push_back(std::string(5000, ' '));
    s.push_back(std::string(3000, 'a'));
    s.push_back("x" + std::string(1000, '\n'));
    s.push_back(repeat("1234567890", 100));
    s.push_back(repeat("abcdefghijklmnopqrstuvwxyz", 80));
    s.push_back(repeat("\xF0\x9F\x99\x82", 500));
    s.push_back(std::string(100, '\t') + "x");
    s.push_back(repeat("ab", 40) + " " + repeat("\xE6\x97\xA5", 30));
    s.push_back(repeat("!?", 60));
    s.push_back(repeat("<|endoftext|>", 20));
    return s;
  }();
  return strings;
}

// ---- tokenizer.json variants -------------------------------------------------------------

json load_json(const fs::path& path) { return json::parse(read_file(path)); }

fs::path write_variant(const emo::test::TempDir& dir, const std::string& name, const json& config) {
  const fs::path path = dir / (name + ".json");
  write_file(path, config.dump());
  return path;
}

json byte_level(bool add_prefix_space, bool use_regex) {
  return {{"type", "ByteLevel"}, {"add_prefix_space", add_prefix_space},
          {"trim_offsets", true}, {"use_regex", use_regex}};
}

json added_token(int id, const std::string& content, bool special, bool normalized,
                 bool lstrip = false, bool rstrip = false, bool single_word = false) {
  return {{"id", id},          {"content", content}, {"single_word", single_word},
          {"lstrip", lstrip},  {"rstrip", rstrip},   {"normalized", normalized},
          {"special", special}};
}

// Variants of dolma2-8k that exercise the settings the shipped files do not use.
std::vector<std::pair<std::string, json>> variants() {
  const json base = load_json(tokenizer_json("dolma2-8k"));
  std::vector<std::pair<std::string, json>> out;

  json gpt2 = base;  // GPT-2 style: ByteLevel alone, with its regex and a prefix space
  gpt2["pre_tokenizer"] = byte_level(true, true);
  out.emplace_back("gpt2-byte-level", gpt2);

  json escapes = base;  // Oniguruma escapes PCRE2 reads differently, and Isolated splits
  escapes["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Split"}, {"pattern", {{"Regex", R"(\h+|\w+|[^\w\s]+|\s+|\u00e9)"}}},
         {"behavior", "Isolated"}, {"invert", false}},
        {{"type", "Split"}, {"pattern", {{"String", "o"}}}, {"behavior", "Isolated"},
         {"invert", false}},
        byte_level(false, false)}}};
  out.emplace_back("onig-escapes", escapes);

  json anchors = base;  // Ruby's (?m) is dot-all and its ^ matches after every newline
  anchors["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Split"}, {"pattern", {{"Regex", R"(^[ \t]+|(?m:.{1,3}))"}}},
         {"behavior", "Removed"}, {"invert", true}},
        byte_level(false, false)}}};
  out.emplace_back("anchors-dotall", anchors);

  json removed = base;  // Removed without invert: the matches are dropped
  removed["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Split"}, {"pattern", {{"Regex", R"(\s+)"}}}, {"behavior", "Removed"},
         {"invert", false}},
        byte_level(true, false)}}};
  out.emplace_back("removed-not-inverted", removed);

  json flags = base;  // added tokens with every flag, in both passes
  for (const json& token :
       {added_token(8002, "<mask>", true, false, true, false),
        added_token(8003, "[SEP]", true, false, false, true),
        // already in the model's vocabulary, so it keeps the model's id (HF's rule)
        added_token(base["model"]["vocab"]["word"].get<int>(), "word", false, false, false,
                    false, true),
        added_token(8004, "n\xC3\xA9" "e", false, true, false, false, true),
        added_token(8005, "<|endoftext|>x", false, false),
        added_token(8006, "tok", false, true)}) {
    flags["added_tokens"].push_back(token);
  }
  out.emplace_back("added-token-flags", flags);

  json pairs = base;  // merges as [left, right] pairs, as newer files write them
  json merge_pairs = json::array();
  for (const json& merge : base["model"]["merges"]) {
    const std::string line = merge.get<std::string>();
    const size_t space = line.find(' ');
    merge_pairs.push_back({line.substr(0, space), line.substr(space + 1)});
  }
  pairs["model"]["merges"] = merge_pairs;
  out.emplace_back("merge-pairs", pairs);

  json ignore = load_json(tokenizer_json("dolma2"));  // ignore_merges: whole-word lookups
  ignore["model"]["ignore_merges"] = true;
  out.emplace_back("ignore-merges", ignore);
  return out;
}

}  // namespace

// =========================================================================================

TEST_CASE("tokenizer: the ids of Hugging Face tokenizers on the whole corpus and GSM8K",
          "[tokenizer][reference][slow]") {
  for (const fs::path& file : {corpus_file("train"), corpus_file("valid"), gsm8k_file()}) {
    const std::vector<std::string> texts = read_texts(file);
    for (const std::string name : {"dolma2", "dolma2-8k"}) {
      INFO(name << " on " << file);
      const Tokenizer tokenizer = Tokenizer::load(tokenizer_json(name).string());
      const IdLists reference = reference_encode(tokenizer_json(name), file);
      CHECK(compare_ids(tokenizer, texts, encode_all(tokenizer, texts), reference) == "");
      CHECK(first_round_trip_failure(tokenizer, texts) == "");
    }
  }
}

TEST_CASE("tokenizer: the ids of Hugging Face tokenizers on awkward strings",
          "[tokenizer][reference]") {
  const std::vector<std::string>& texts = nasty_strings();
  for (const std::string name : {"dolma2", "dolma2-8k"}) {
    INFO(name);
    const Tokenizer tokenizer = Tokenizer::load(tokenizer_json(name).string());
    const IdLists reference = reference_encode(tokenizer_json(name), texts);
    CHECK(compare_ids(tokenizer, texts, encode_all(tokenizer, texts), reference) == "");
    CHECK(first_round_trip_failure(tokenizer, texts) == "");
  }
}

TEST_CASE("tokenizer: other pre-tokenizers and added-token flags and merge formats match too",
          "[tokenizer][reference]") {
  emo::test::TempDir dir;
  std::vector<std::string> texts = nasty_strings();
  const std::vector<std::string> valid = read_texts(corpus_file("valid"));
  texts.insert(texts.end(), valid.begin(), valid.begin() + 200);
  for (const auto& [name, config] : variants()) {
    INFO("variant " << name);
    const fs::path path = write_variant(dir, name, config);
    const Tokenizer tokenizer = Tokenizer::load(path.string());
    const IdLists reference = reference_encode(path, texts);
    CHECK(compare_ids(tokenizer, texts, encode_all(tokenizer, texts), reference) == "");
  }
}

TEST_CASE("tokenizer: decode gives the text of Hugging Face with invalid UTF-8 and specials",
          "[tokenizer][reference]") {
  for (const std::string name : {"dolma2", "dolma2-8k"}) {
    INFO(name);
    const Tokenizer tokenizer = Tokenizer::load(tokenizer_json(name).string());
    // Random mixes of lone bytes (mostly the 0x80-0xFF that make invalid UTF-8), added
    // tokens and ordinary tokens.
    std::vector<int32_t> pool;
    for (int b = 0; b < 256; ++b) pool.push_back(*tokenizer.token_to_id(byte_symbol(b)));
    for (const char* token : {"<|endoftext|>", "<|pad|>", "\xC4\xA0world"}) {
      const std::optional<int32_t> id = tokenizer.token_to_id(token);
      REQUIRE(id.has_value());
      pool.push_back(*id);
    }
    for (int32_t id = 0; id < tokenizer.vocab_size(); id += 997) pool.push_back(id);
    std::mt19937 random(1234);
    IdLists lists = {{}};
    for (int i = 0; i < 400; ++i) {
      std::vector<int32_t> ids(1 + random() % 12);
      for (int32_t& id : ids) id = pool[random() % pool.size()];
      lists.push_back(ids);
    }
    for (bool skip : {false, true}) {
      const std::vector<std::string> reference =
          reference_decode(tokenizer_json(name), lists, skip);
      REQUIRE(reference.size() == lists.size());
      size_t differing = 0;
      for (size_t i = 0; i < lists.size(); ++i) {
        const std::string ours = tokenizer.decode(lists[i], skip);
        if (ours != reference[i] && differing++ == 0) {
          INFO("skip_special_tokens " << skip << ", ids " << json(lists[i]).dump());
          CHECK(json(ours).dump() == json(reference[i]).dump());
        }
      }
      CHECK(differing == 0);
    }
  }
}

TEST_CASE("tokenizer: hand-checked ids", "[tokenizer]") {
  const Tokenizer big = Tokenizer::load(tokenizer_json("dolma2").string());
  const Tokenizer small = Tokenizer::load(tokenizer_json("dolma2-8k").string());
  using Ids = std::vector<int32_t>;
  // Written down from Hugging Face tokenizers' output.
  CHECK(big.encode("Hello world") == Ids{9906, 1917});
  CHECK(big.encode("Hello world<|endoftext|>") == Ids{9906, 1917, 100257});
  CHECK(big.encode("x = 1234567") == Ids{87, 284, 220, 4513, 10961, 22});
  CHECK(big.encode("I'LL DON'T") == Ids{40, 6, 4178, 45373, 17773});
  CHECK(big.encode("<|endof") == Ids{27, 91, 408, 1073});
  CHECK(big.encode("  \t\r\n  a") == Ids{256, 4574, 220, 264});
  CHECK(small.encode("Hello world") == Ids{39, 4896, 1917});
  CHECK(small.encode("Hello world<|endoftext|>") == Ids{39, 4896, 1917, 8000});
  CHECK(small.encode("x = 1234567") == Ids{87, 284, 220, 4513, 1774, 21, 22});
  CHECK(big.encode("").empty());

  CHECK(big.vocab_size() == 100278);
  CHECK(small.vocab_size() == 8002);
  CHECK(big.eos_id() == 100257);
  CHECK(big.pad_id() == 100277);
  CHECK(small.eos_id() == 8000);
  CHECK(small.pad_id() == 8001);
  CHECK(big.token_to_id("\xC4\xA0world") == 1917);
  CHECK(!big.token_to_id("no such token").has_value());
  CHECK(big.id_to_token(9906) == "Hello");
  CHECK(big.id_to_token(100257) == "<|endoftext|>");
  CHECK(big.is_special(100257));
  CHECK(!big.is_special(100256));  // <|extra_id_0|> is added but not special
  CHECK(!big.is_special(9906));
  CHECK(big.path() == tokenizer_json("dolma2").string());
  CHECK(Tokenizer::load(tokenizer_json("dolma2").parent_path().string()).path() ==
        tokenizer_json("dolma2").string());

  CHECK(big.decode({9906, 1917, 100257}) == "Hello world<|endoftext|>");
  CHECK(big.decode({9906, 1917, 100257}, true) == "Hello world");
  CHECK(big.decode({}).empty());
}

TEST_CASE("tokenizer: the cache and the naive merge loop and threads change no id", "[tokenizer]") {
  std::vector<std::string> texts = read_texts(corpus_file("valid"));
  texts.insert(texts.end(), nasty_strings().begin(), nasty_strings().end());
  const std::string path = tokenizer_json("dolma2").string();
  const IdLists expected = encode_all(Tokenizer::load(path, {0, false}), texts);
  const Tokenizer naive = Tokenizer::load(path, {0, true});
  CHECK(compare_ids(naive, texts, encode_all(naive, texts), expected) == "");

  // A cache small enough to be emptied all the time, shared by four threads.
  const Tokenizer shared = Tokenizer::load(path, {64, false});
  std::vector<IdLists> results(4);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < results.size(); ++t) {
    threads.emplace_back([&, t] { results[t] = encode_all(shared, texts); });
  }
  for (std::thread& thread : threads) thread.join();
  for (const IdLists& result : results) CHECK(compare_ids(shared, texts, result, expected) == "");
}

TEST_CASE("tokenizer: bad input gets an emo::Error naming the file and the field",
          "[tokenizer]") {
  using Catch::Matchers::Contains;
  emo::test::TempDir dir;
  const json base = load_json(tokenizer_json("dolma2-8k"));
  const auto load_variant = [&](const std::string& name, const json& config) {
    return Tokenizer::load(write_variant(dir, name, config).string());
  };

  const std::string missing = (dir / "missing.json").string();
  CHECK_THROWS_WITH(Tokenizer::load(missing), Contains(missing) && Contains("cannot open"));

  const fs::path not_json = dir / "not-json.json";
  write_file(not_json, "{\"model\": [1, 2");
  CHECK_THROWS_WITH(Tokenizer::load(not_json.string()),
                    Contains(not_json.string()) && Contains("not valid JSON"));
  // Found by fuzz_tokenizer: a number beyond double escaped as nlohmann's out_of_range.
  const fs::path huge_number = dir / "huge-number.json";
  write_file(huge_number, "{\"version\": 888e88888888}");
  CHECK_THROWS_WITH(Tokenizer::load(huge_number.string()),
                    Contains(huge_number.string()) && Contains("not valid JSON") && Contains("number overflow"));

  json unigram = base;
  unigram["model"]["type"] = "Unigram";
  CHECK_THROWS_WITH(load_variant("unigram", unigram),
                    Contains("unigram.json") && Contains("model.type") && Contains("Unigram"));

  json no_model = base;
  no_model.erase("model");
  CHECK_THROWS_WITH(load_variant("no-model", no_model), Contains("model: missing"));

  json normalizer = base;
  normalizer["normalizer"] = {{"type", "NFC"}};
  CHECK_THROWS_WITH(load_variant("normalizer", normalizer), Contains("normalizer"));

  json metaspace = base;
  metaspace["pre_tokenizer"]["pretokenizers"][0] = {{"type", "Metaspace"}};
  CHECK_THROWS_WITH(load_variant("metaspace", metaspace),
                    Contains("pre_tokenizer.pretokenizers[0].type") && Contains("Metaspace"));

  json behavior = base;
  behavior["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "MergedWithNext";
  CHECK_THROWS_WITH(load_variant("behavior", behavior),
                    Contains("pre_tokenizer.pretokenizers[0].behavior"));

  json bad_regex = base;
  bad_regex["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed";
  CHECK_THROWS_WITH(load_variant("bad-regex", bad_regex),
                    Contains("pre_tokenizer.pretokenizers[0].pattern.Regex") &&
                        Contains("does not compile"));

  json word_boundary = base;
  word_boundary["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = R"(\b\w+\b)";
  CHECK_THROWS_WITH(load_variant("word-boundary", word_boundary), Contains("\\b"));

  json bad_merge = base;
  bad_merge["model"]["merges"][5] = "no-such-token x";
  CHECK_THROWS_WITH(load_variant("bad-merge", bad_merge),
                    Contains("model.merges[5]") && Contains("no-such-token"));

  json wrong_id = base;
  wrong_id["added_tokens"][1]["id"] = 9000;
  CHECK_THROWS_WITH(load_variant("wrong-id", wrong_id),
                    Contains("added_tokens[1].id") && Contains("8001"));

  json no_decoder = base;
  no_decoder["decoder"] = nullptr;
  CHECK_THROWS_WITH(load_variant("no-decoder", no_decoder), Contains("decoder"));

  const Tokenizer tokenizer = Tokenizer::load(tokenizer_json("dolma2-8k").string());
  CHECK_THROWS_WITH(tokenizer.encode("ok \xC3\x28 then"),
                    Contains("tokenizer.json") && Contains("text") &&
                        Contains("invalid UTF-8 at byte offset 3"));
  CHECK_THROWS_WITH(tokenizer.encode("\xED\xA0\x80"), Contains("byte offset 0"));  // a surrogate
  CHECK_THROWS_WITH(tokenizer.encode("abc\xF0\x9F\x99"), Contains("byte offset 3"));  // cut short
  CHECK_THROWS_WITH(tokenizer.decode({1, 2, 8002}),
                    Contains("tokenizer.json") && Contains("ids[2]") && Contains("out of range"));
  CHECK_THROWS_WITH(tokenizer.decode({-1}), Contains("ids[0]"));
  CHECK_THROWS_AS(tokenizer.id_to_token(8002), emo::Error);
}
