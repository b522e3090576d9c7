// GSM8K prompt, target and scoring; see gsm8k.h and docs/gsm8k-protocol.md for the sources.
#include "core/text/gsm8k.h"

#include <cmath>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>

#include "core/io/jsonl.h"

#include "core/text/utf8.h"
#include "core/util/error.h"
#include "core/util/fs.h"

namespace emo {

namespace {

// ---- Python str semantics on UTF-8 ---------------------------------------------------

// Decodes the code point at s[i] into *cp and returns its length in bytes. A byte that
// does not start a valid sequence is one unit of its own, mapped above U+10FFFF so that it
// is neither a space nor a digit.
size_t decode_utf8(const std::string& s, size_t i, uint32_t* cp) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  auto cont = [&](size_t k) {
    return i + k < s.size() && (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
  };
  auto at = [&](size_t k) { return static_cast<uint32_t>(static_cast<unsigned char>(s[i + k]) & 0x3F); };
  if (b0 < 0x80) {
    *cp = b0;
    return 1;
  }
  if (b0 >= 0xC2 && b0 <= 0xDF && cont(1)) {
    *cp = ((b0 & 0x1Fu) << 6) | at(1);
    return 2;
  }
  if (b0 >= 0xE0 && b0 <= 0xEF && cont(1) && cont(2)) {
    uint32_t c = ((b0 & 0x0Fu) << 12) | (at(1) << 6) | at(2);
    if (c >= 0x800 && (c < 0xD800 || c > 0xDFFF)) {
      *cp = c;
      return 3;
    }
  }
  if (b0 >= 0xF0 && b0 <= 0xF4 && cont(1) && cont(2) && cont(3)) {
    uint32_t c = ((b0 & 0x07u) << 18) | (at(1) << 12) | (at(2) << 6) | at(3);
    if (c >= 0x10000 && c <= 0x10FFFF) {
      *cp = c;
      return 4;
    }
  }
  *cp = 0x110000u + b0;
  return 1;
}

// str.isspace(), which is also what `\s` matches in a str pattern (CPython, Unicode 14).
bool py_isspace(uint32_t c) {
  if (c == 0x20 || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F)) return true;
  if (c < 0x85) return false;
  return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
         c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// `\d` in a str pattern: Unicode category Nd (CPython, Unicode 14).
bool py_isdigit(uint32_t c) {
  static const uint32_t kRanges[][2] = {
      {0x30, 0x39},       {0x660, 0x669},     {0x6F0, 0x6F9},     {0x7C0, 0x7C9},
      {0x966, 0x96F},     {0x9E6, 0x9EF},     {0xA66, 0xA6F},     {0xAE6, 0xAEF},
      {0xB66, 0xB6F},     {0xBE6, 0xBEF},     {0xC66, 0xC6F},     {0xCE6, 0xCEF},
      {0xD66, 0xD6F},     {0xDE6, 0xDEF},     {0xE50, 0xE59},     {0xED0, 0xED9},
      {0xF20, 0xF29},     {0x1040, 0x1049},   {0x1090, 0x1099},   {0x17E0, 0x17E9},
      {0x1810, 0x1819},   {0x1946, 0x194F},   {0x19D0, 0x19D9},   {0x1A80, 0x1A89},
      {0x1A90, 0x1A99},   {0x1B50, 0x1B59},   {0x1BB0, 0x1BB9},   {0x1C40, 0x1C49},
      {0x1C50, 0x1C59},   {0xA620, 0xA629},   {0xA8D0, 0xA8D9},   {0xA900, 0xA909},
      {0xA9D0, 0xA9D9},   {0xA9F0, 0xA9F9},   {0xAA50, 0xAA59},   {0xABF0, 0xABF9},
      {0xFF10, 0xFF19},   {0x104A0, 0x104A9}, {0x10D30, 0x10D39}, {0x11066, 0x1106F},
      {0x110F0, 0x110F9}, {0x11136, 0x1113F}, {0x111D0, 0x111D9}, {0x112F0, 0x112F9},
      {0x11450, 0x11459}, {0x114D0, 0x114D9}, {0x11650, 0x11659}, {0x116C0, 0x116C9},
      {0x11730, 0x11739}, {0x118E0, 0x118E9}, {0x11950, 0x11959}, {0x11C50, 0x11C59},
      {0x11D50, 0x11D59}, {0x11DA0, 0x11DA9}, {0x16A60, 0x16A69}, {0x16AC0, 0x16AC9},
      {0x16B50, 0x16B59}, {0x1D7CE, 0x1D7FF}, {0x1E140, 0x1E149}, {0x1E2F0, 0x1E2F9},
      {0x1E950, 0x1E959}, {0x1FBF0, 0x1FBF9}};
  if (c <= 0x39) return c >= 0x30;
  for (const auto& r : kRanges)
    if (c >= r[0] && c <= r[1]) return true;
  return false;
}

// str.strip() / str.rstrip() with no argument.
std::string py_strip(const std::string& s, bool left = true) {
  size_t begin = s.size(), end = 0, i = 0;
  bool seen = false;
  while (i < s.size()) {
    uint32_t cp;
    size_t n = decode_utf8(s, i, &cp);
    if (!py_isspace(cp)) {
      if (!seen) begin = i;
      seen = true;
      end = i + n;
    }
    i += n;
  }
  if (!seen) return std::string();
  if (!left) begin = 0;
  return s.substr(begin, end - begin);
}
std::string py_rstrip(const std::string& s) { return py_strip(s, /*left=*/false); }

// re.sub(r"\s+", " ", s)
std::string collapse_whitespace(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  bool in_space = false;
  for (size_t i = 0; i < s.size();) {
    uint32_t cp;
    size_t n = decode_utf8(s, i, &cp);
    if (py_isspace(cp)) {
      if (!in_space) out += ' ';
      in_space = true;
    } else {
      out.append(s, i, n);
      in_space = false;
    }
    i += n;
  }
  return out;
}

// re.sub(r"<<.*?>>", "", s): leftmost, shortest; `.` is anything but "\n".
std::string remove_calculator_annotations(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    if (s.compare(i, 2, "<<") == 0) {
      size_t j = i + 2;
      bool matched = false;
      for (; j < s.size(); ++j) {
        if (s[j] == '\n') break;
        if (j + 1 < s.size() && s[j] == '>' && s[j + 1] == '>') {
          matched = true;
          break;
        }
      }
      if (matched) {
        i = j + 2;
        continue;
      }
    }
    out += s[i];
    ++i;
  }
  return out;
}

// str.capitalize() of a one-character string: the character's title case. Covers ASCII,
// Latin-1, Latin Extended-A, basic Greek and Cyrillic; other characters stay as they are.
std::string title_case(uint32_t c) {
  std::string out;
  uint32_t t = c;
  if (c >= 'a' && c <= 'z') {
    t = c - 0x20;
  } else if (c == 0xB5) {
    t = 0x39C;
  } else if (c == 0xDF) {
    return "Ss";
  } else if (c >= 0xE0 && c <= 0xFE && c != 0xF7) {
    t = c - 0x20;
  } else if (c == 0xFF) {
    t = 0x178;
  } else if (c >= 0x100 && c <= 0x17F) {
    if (c == 0x131) {
      t = 'I';
    } else if (c == 0x149) {
      append_utf8(out, 0x2BC);
      out += 'N';
      return out;
    } else if (c == 0x17F) {
      t = 'S';
    } else if ((c <= 0x12F || (c >= 0x132 && c <= 0x137) || (c >= 0x14A && c <= 0x177)) && (c & 1)) {
      t = c - 1;
    } else if (((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) && !(c & 1)) {
      t = c - 1;
    }
  } else if (c >= 0x3B1 && c <= 0x3C9) {
    t = c == 0x3C2 ? 0x3A3 : c - 0x20;
  } else if (c >= 0x430 && c <= 0x44F) {
    t = c - 0x20;
  } else if (c >= 0x450 && c <= 0x45F) {
    t = c - 0x50;
  }
  append_utf8(out, t);
  return out;
}

// answer[0].capitalize() + answer[1:]
std::string capitalize_first(const std::string& s) {
  if (s.empty()) return s;
  uint32_t cp;
  size_t n = decode_utf8(s, 0, &cp);
  if (cp > 0x10FFFF) return s;
  return title_case(cp) + s.substr(n);
}

// str.replace(from, to): left to right, non-overlapping.
std::string replace_all(const std::string& s, const std::string& from, const std::string& to) {
  std::string out;
  size_t i = 0;
  while (true) {
    size_t j = s.find(from, i);
    if (j == std::string::npos) break;
    out.append(s, i, j - i);
    out += to;
    i = j + from.size();
  }
  out.append(s, i, std::string::npos);
  return out;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool ascii_digit(char c) { return c >= '0' && c <= '9'; }
bool ascii_alnum(char c) {
  return ascii_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
std::string ascii_lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 0x20);
  return s;
}

// ---- the few-shot context ------------------------------------------------------------

void require_shots(int num_shots) {
  require(num_shots >= 0 && num_shots <= gsm8k_max_shots(), "", "num_shots",
          "GSM8K few-shot count must be between 0 and ", gsm8k_max_shots(),
          " (the STD:GSM8k exemplars), got ", num_shots);
}

void require_item(const GsmItem& item) {
  require(!py_strip(item.question).empty(), "", "question", "GSM8K question is empty");
  require(item.answer.find("####") != std::string::npos, "", "answer",
          "GSM8K answer has no \"####\" before the final number: \"",
          item.answer.substr(0, 80), item.answer.size() > 80 ? "...\"" : "\"");
}

// fewshot_context(doc, num_fewshot, description=None, use_chat_format=False): each shot is
// doc_to_text(ex) + doc_to_target(ex), joined by "\n\n", then "\n\n" + doc_to_text(doc).
std::string build_context(const std::string& question, int num_shots, bool dedupe_exemplars) {
  require_shots(num_shots);
  std::string query = gsm8k_question_text(question);
  if (num_shots == 0) return query;
  const auto& ex = gsm8k_std_exemplars();
  std::string out;
  for (int k = 0; k < num_shots; ++k) {
    if (k > 0) out += "\n\n";
    const std::string target =
        dedupe_exemplars ? gsm8k_normalize_answer(ex[k].answer, ex[k].short_answer)
                         : gsm8k_normalize_answer_str(ex[k].answer, ex[k].short_answer);
    out += gsm8k_question_text(ex[k].question) + " " + target;
  }
  out += "\n\n";
  out += query;
  return out;
}

// One number of the lenient extraction: [lead, end) in the text, and its text with sign.
struct LooseNumber {
  size_t lead;
  size_t end;
  std::string text;
};

std::vector<LooseNumber> loose_numbers(const std::string& s) {
  std::vector<LooseNumber> out;
  size_t i = 0;
  while (i < s.size()) {
    bool starts = ascii_digit(s[i]) ||
                  (s[i] == '.' && i + 1 < s.size() && ascii_digit(s[i + 1]) &&
                   (i == 0 || !ascii_digit(s[i - 1])));
    if (!starts) {
      ++i;
      continue;
    }
    size_t begin = i, j = i;
    while (j < s.size() && ascii_digit(s[j])) ++j;
    // Thousands groups: ",ddd" not followed by another digit.
    while (j > begin && j + 3 < s.size() && s[j] == ',' && ascii_digit(s[j + 1]) &&
           ascii_digit(s[j + 2]) && ascii_digit(s[j + 3]) &&
           (j + 4 >= s.size() || !ascii_digit(s[j + 4])))
      j += 4;
    if (j + 1 < s.size() && s[j] == '.' && ascii_digit(s[j + 1])) {
      ++j;
      while (j < s.size() && ascii_digit(s[j])) ++j;
    }
    // Sign: "-5", "-$5", "$-5"; not the minus of "10-5" or "x-5".
    size_t lead = begin;
    if (lead > 0 && s[lead - 1] == '$') --lead;
    std::string sign;
    if (lead > 0 && (s[lead - 1] == '-' || s[lead - 1] == '+')) {
      size_t p = lead - 1;
      if (p == 0 || !(ascii_alnum(s[p - 1]) || s[p - 1] == ')')) {
        sign = s[p] == '-' ? "-" : "";
        lead = p;
      }
    }
    out.push_back({lead, j, sign + s.substr(begin, j - begin)});
    i = j;
  }
  return out;
}

}  // namespace

// ---- data ----------------------------------------------------------------------------

GsmItem gsm8k_parse_jsonl_line(const std::string& line, const std::string& file, size_t line_no) {
  const std::string where = cat("line ", line_no);
  auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  require(!j.is_discarded() && j.is_object(), file, where,
          "expected a JSON object {\"question\": ..., \"answer\": ...}");
  auto field = [&](const char* key) {
    auto it = j.find(key);
    require(it != j.end(), file, where, "missing key \"", key, "\"");
    require(it->is_string(), file, where, "\"", key, "\" must be a string");
    return it->get<std::string>();
  };
  GsmItem item;
  item.question = field("question");
  item.answer = field("answer");
  return item;
}

std::vector<GsmItem> gsm8k_read_jsonl(const std::string& path) {
  const std::string text = read_text_file(path);
  std::vector<GsmItem> items;
  size_t pos = 0, line_no = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    ++line_no;
    std::string line = text.substr(pos, nl - pos);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") != std::string::npos)
      items.push_back(gsm8k_parse_jsonl_line(line, path, line_no));
    pos = nl + 1;
  }
  return items;
}

// ---- prompt and target ---------------------------------------------------------------

const std::vector<Gsm8kExemplar>& gsm8k_std_exemplars() {
  // allenai/oe-eval oe_eval/tasks/fewshot_sources.py, FEWSHOT_SOURCES["STD:GSM8k"], verbatim.
  static const std::vector<Gsm8kExemplar> kExemplars = {
      {"There are 15 trees in the grove. Grove workers will plant trees in the grove today. "
       "After they are done, there will be 21 trees. How many trees did the grove workers plant "
       "today?",
       "There are 15 trees originally. Then there were 21 trees after some more were planted. "
       "So there must have been 21 - 15 = 6. So the answer is 6.",
       "6"},
      {"If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the "
       "parking lot?",
       "There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. So the answer is 5.", "5"},
      {"Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they "
       "have left in total?",
       "Originally, Leah had 32 chocolates. Her sister had 42. So in total they had 32 + 42 = 74. "
       "After eating 35, they had 74 - 35 = 39. So the answer is 39.",
       "39"},
      {"Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How "
       "many lollipops did Jason give to Denny?",
       "Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he gave "
       "Denny 20 - 12 = 8. So the answer is 8.",
       "8"},
      {"Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How many "
       "toys does he have now?",
       "Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is 4 "
       "more toys. 5 + 4 = 9. So the answer is 9.",
       "9"},
      {"There were nine computers in the server room. Five more computers were installed each "
       "day, from monday to thursday. How many computers are now in the server room?",
       "There were originally 9 computers. For each of 4 days, 5 more computers were added. So "
       "5 * 4 = 20 computers were added. 9 + 20 is 29. So the answer is 29.",
       "29"},
      {"Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 "
       "more. How many golf balls did he have at the end of wednesday?",
       "Michael started with 58 golf balls. After losing 23 on tuesday, he had 58 - 23 = 35. "
       "After losing 2 more, he had 35 - 2 = 33 golf balls. So the answer is 33.",
       "33"},
      {"Olivia has $23. She bought five bagels for $3 each. How much money does she have left?",
       "Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she "
       "has 23 - 15 dollars left. 23 - 15 is 8. So the answer is 8.",
       "8"},
  };
  return kExemplars;
}

int gsm8k_max_shots() { return static_cast<int>(gsm8k_std_exemplars().size()); }
int gsm8k_paper_shots() { return 8; }

std::string gsm8k_short_answer(const std::string& gold_answer) {
  // str.split finds separators left to right without overlap, so the last piece of
  // "#####5" is "#5" (rfind would give "5").
  size_t start = 0;
  for (size_t p = gold_answer.find("####"); p != std::string::npos;
       p = gold_answer.find("####", p + 4))
    start = p + 4;
  return py_strip(gold_answer.substr(start));
}

std::string gsm8k_add_spaces_around_operators(const std::string& s) {
  std::string result;
  result.reserve(s.size() + s.size() / 4);
  for (char c : s) {
    if (c == '+' || c == '-' || c == '*' || c == '/' || c == '=') {
      if (!result.empty() && result.back() != ' ') result += ' ';
      result += c;
      result += ' ';
    } else {
      result += c;
    }
  }
  return replace_all(result, "  ", " ");
}

std::string gsm8k_normalize_answer_str(const std::string& answer, const std::string& short_answer) {
  std::string a = remove_calculator_annotations(answer);
  a = py_strip(collapse_whitespace(a));
  size_t hashes = a.find("####");
  if (hashes != std::string::npos) a.resize(hashes);
  a = capitalize_first(a);
  a = py_strip(a);
  if (!ends_with(a, ".")) a += '.';
  a += " So the answer is " + short_answer + ".";
  return gsm8k_add_spaces_around_operators(a);
}

std::string gsm8k_normalize_answer(const std::string& answer, const std::string& short_answer) {
  std::string out = gsm8k_normalize_answer_str(answer, short_answer);
  const std::string suffix = py_rstrip(
      gsm8k_add_spaces_around_operators("So the answer is " + short_answer + "."));
  const std::string doubled = suffix + " " + suffix;
  const std::string stripped = py_rstrip(out);
  if (ends_with(stripped, doubled)) out = stripped.substr(0, stripped.size() - doubled.size()) + suffix;
  return out;
}

std::string gsm8k_normalize_answer(const std::string& gold_answer) {
  return gsm8k_normalize_answer(gold_answer, gsm8k_short_answer(gold_answer));
}

std::string gsm8k_question_text(const std::string& question) {
  require(!py_strip(question).empty(), "", "question", "GSM8K question is empty");
  return "Question: " + question + "\nAnswer:";
}

std::string gsm8k_target(const GsmItem& item) {
  require_item(item);
  return " " + gsm8k_normalize_answer(item.answer);
}

std::string gsm8k_context(const std::string& question, int num_shots) {
  return build_context(question, num_shots, /*dedupe_exemplars=*/true);
}

std::pair<std::string, std::string> gsm8k_sft_pair(const GsmItem& item, int num_shots) {
  require_item(item);
  return {gsm8k_context(item.question, num_shots), gsm8k_target(item)};
}

std::pair<std::string, std::string> gsm8k_perplexity_pair(const GsmItem& item, int num_shots) {
  require_item(item);
  std::string context = build_context(item.question, num_shots, /*dedupe_exemplars=*/false);
  // construct_requests: continuation=" {}".format(self.doc_to_target(doc)), and
  // doc_to_target already starts with " ".
  std::string continuation =
      "  " + gsm8k_normalize_answer_str(item.answer, gsm8k_short_answer(item.answer));
  return {std::move(context), std::move(continuation)};
}

// ---- generation and scoring ----------------------------------------------------------

const std::vector<std::string>& gsm8k_stop_sequences() {
  static const std::vector<std::string> kStops = {"Question:", "</s>", "<|im_end|>", "\n\n"};
  return kStops;
}

int gsm8k_max_gen_tokens() { return 512; }

std::string gsm8k_stop_truncate(const std::string& generated) {
  size_t cut = generated.size();
  for (const auto& stop : gsm8k_stop_sequences()) {
    size_t p = generated.find(stop);
    if (p != std::string::npos && p < cut) cut = p;
  }
  return generated.substr(0, cut);
}

std::string gsm8k_oe_extract_answer(const std::string& continuation) {
  // output = re.sub(r"(\d),(\d)", r"\1\2", continuation)
  std::string output;
  output.reserve(continuation.size());
  const std::string& s = continuation;
  for (size_t i = 0; i < s.size();) {
    uint32_t a;
    size_t na = decode_utf8(s, i, &a);
    if (py_isdigit(a) && i + na < s.size() && s[i + na] == ',' && i + na + 1 < s.size()) {
      uint32_t b;
      size_t nb = decode_utf8(s, i + na + 1, &b);
      if (py_isdigit(b)) {
        output.append(s, i, na);
        output.append(s, i + na + 1, nb);
        i += na + 1 + nb;
        continue;
      }
    }
    output.append(s, i, na);
    i += na;
  }
  // numbers = re.findall(r"[-+]?\d*\.\d+|\d+", output); the last one, else output.
  const std::string& o = output;
  auto digits_from = [&](size_t k) {
    while (k < o.size()) {
      uint32_t c;
      size_t n = decode_utf8(o, k, &c);
      if (!py_isdigit(c)) break;
      k += n;
    }
    return k;
  };
  std::string last;
  bool found = false;
  for (size_t i = 0; i < o.size();) {
    // Alternative 1: [-+]?\d*\.\d+ (the sign cannot be given back usefully: without it the
    // match would have to start at the sign character, which is no digit and no '.').
    size_t j = i;
    if (o[j] == '-' || o[j] == '+') ++j;
    j = digits_from(j);
    if (j < o.size() && o[j] == '.') {
      size_t k = digits_from(j + 1);
      if (k > j + 1) {
        last = o.substr(i, k - i);
        found = true;
        i = k;
        continue;
      }
    }
    // Alternative 2: \d+
    size_t k = digits_from(i);
    if (k > i) {
      last = o.substr(i, k - i);
      found = true;
      i = k;
      continue;
    }
    uint32_t c;
    i += decode_utf8(o, i, &c);
  }
  return found ? last : output;
}

std::string gsm8k_oe_label(const std::string& gold_answer) {
  return gsm8k_oe_extract_answer(gsm8k_short_answer(gold_answer));
}

bool gsm8k_oe_exact_match(const std::string& model_answer, const std::string& label) {
  auto clean = [](std::string x) {
    x = replace_all(x, ",", "");                         // ","
    x = replace_all(x, "$", "");                         // "\\$"
    size_t p = x.rfind("#### ");                         // "(?s).*#### " (greedy)
    if (p != std::string::npos) x = x.substr(p + 5);
    if (ends_with(x, "."))                               // "\\.$" ($ also matches before
      x.pop_back();                                      //  a final "\n")
    else if (ends_with(x, ".\n"))
      x.erase(x.size() - 2, 1);
    return ascii_lower(x);                               // ignore_case=True
  };
  return clean(model_answer) == clean(label);
}

bool gsm8k_score(const std::string& generated, const std::string& gold_answer) {
  return gsm8k_oe_exact_match(gsm8k_oe_extract_answer(gsm8k_stop_truncate(generated)),
                              gsm8k_oe_label(gold_answer));
}

std::optional<std::string> gsm8k_extract_answer(const std::string& generated) {
  const std::vector<LooseNumber> numbers = loose_numbers(generated);
  if (numbers.empty()) return std::nullopt;
  const std::string lower = ascii_lower(generated);
  size_t marker_end = std::string::npos;
  for (const char* marker : {"the answer is", "####"}) {
    size_t p = lower.rfind(marker);
    if (p == std::string::npos) continue;
    size_t e = p + std::string(marker).size();
    if (marker_end == std::string::npos || e > marker_end) marker_end = e;
  }
  if (marker_end != std::string::npos) {
    for (const auto& n : numbers) {
      if (n.lead < marker_end) continue;
      bool adjacent = true;
      for (size_t k = marker_end; k < n.lead; ++k) {
        char c = generated[k];
        if (!(c == ' ' || c == '\t' || c == '\n' || c == ':' || c == '*' || c == '$')) {
          adjacent = false;
          break;
        }
      }
      if (adjacent) return gsm8k_normalize_number(n.text);
      break;
    }
  }
  return gsm8k_normalize_number(numbers.back().text);
}

std::string gsm8k_normalize_number(const std::string& s) {
  std::string t;
  for (char c : s)
    if (c != ',' && c != '$' && c != ' ' && c != '\t' && c != '\n' && c != '\r') t += c;
  while (!t.empty() && t.back() == '.') t.pop_back();
  bool negative = false;
  size_t i = 0;
  if (i < t.size() && (t[i] == '-' || t[i] == '+')) negative = t[i++] == '-';
  std::string int_part, frac_part;
  bool dot = false;
  for (; i < t.size(); ++i) {
    if (ascii_digit(t[i])) {
      (dot ? frac_part : int_part) += t[i];
    } else if (t[i] == '.' && !dot) {
      dot = true;
    } else {
      return py_strip(s);  // not a number
    }
  }
  if (int_part.empty() && frac_part.empty()) return py_strip(s);
  size_t nz = int_part.find_first_not_of('0');
  int_part = nz == std::string::npos ? "0" : int_part.substr(nz);
  while (!frac_part.empty() && frac_part.back() == '0') frac_part.pop_back();
  std::string out = int_part;
  if (!frac_part.empty()) out += "." + frac_part;
  if (negative && out != "0") out = "-" + out;
  return out;
}

double bits_per_byte(double total_nll_nats, size_t target_utf8_bytes) {
  require(target_utf8_bytes > 0, "", "target", "bits per byte of an empty target is undefined");
  return total_nll_nats / (static_cast<double>(target_utf8_bytes) * std::log(2.0));
}

std::vector<GsmSplitItem> gsm8k_file_items(const std::string& path) {
  const std::string text = read_text_file(path);
  std::string stem = fs::path(path).filename().string();
  for (const char* ext : {".gz", ".jsonl", ".json"})
    if (stem.size() > std::strlen(ext) && stem.compare(stem.size() - std::strlen(ext), std::string::npos, ext) == 0)
      stem.resize(stem.size() - std::strlen(ext));
  std::vector<GsmSplitItem> items;
  size_t pos = 0, line = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    std::string s = text.substr(pos, nl - pos);
    if (!s.empty() && s.back() == '\r') s.pop_back();
    if (s.find_first_not_of(" \t") != std::string::npos) {
      GsmSplitItem it;
      it.item = gsm8k_parse_jsonl_line(s, path, line + 1);
      require(!it.item.question.empty(), path, cat("line ", line + 1), "empty \"question\"");
      require(it.item.answer.find("####") != std::string::npos, path, cat("line ", line + 1),
              "\"answer\" has no \"#### N\" final answer");
      it.line = line;
      it.id = stem + "-" + std::to_string(line);
      items.push_back(std::move(it));
    }
    ++line;
    pos = nl + 1;
  }
  if (items.empty()) fail(path, "", "no GSM8K items (an empty file)");
  return items;
}

std::vector<GsmSplitItem> gsm8k_split_items(const std::string& gsm8k_path, const std::string& corpus_path) {
  std::vector<GsmSplitItem> all = gsm8k_file_items(gsm8k_path);
  std::map<size_t, size_t> by_line;
  for (size_t i = 0; i < all.size(); ++i) by_line[all[i].line] = i;
  const std::string prefix = "gsm8k-train-";
  std::map<size_t, GsmSplitItem> chosen;
  JsonlReader reader(corpus_path);
  Json rec;
  while (reader.next(rec)) {
    auto id = rec.find("id");
    if (id == rec.end() || !id->is_string()) continue;
    const std::string s = id->get<std::string>();
    if (s.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string digits = s.substr(prefix.size());
    require(!digits.empty() && digits.find_first_not_of("0123456789") == std::string::npos && digits.size() < 10,
            corpus_path, cat("line ", reader.line()), "malformed GSM8K id \"", s, "\"");
    size_t n = std::stoul(digits);
    auto it = by_line.find(n);
    require(it != by_line.end(), corpus_path, cat("line ", reader.line()), "\"", s, "\" names line ", n, " of ",
            gsm8k_path, ", which has no item there");
    GsmSplitItem item = all[it->second];
    auto text = rec.find("text");
    require(text != rec.end() && text->is_string() &&
                text->get<std::string>().find(item.item.question) != std::string::npos,
            corpus_path, cat("line ", reader.line()), "\"", s, "\" does not hold the question of line ", n, " of ",
            gsm8k_path, " (the corpus and the GSM8K file do not belong together)");
    item.id = s;
    chosen.emplace(n, std::move(item));
  }
  std::vector<GsmSplitItem> out;
  for (auto& [n, item] : chosen) out.push_back(std::move(item));
  if (out.empty()) fail(corpus_path, "", "no \"gsm8k-train-N\" documents in this corpus file");
  return out;
}

}  // namespace emo
