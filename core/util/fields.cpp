#include "core/util/fields.h"

#include <cerrno>
#include <cctype>
#include <cstdlib>
#include <stdexcept>

#include "core/util/error.h"

namespace emo {

const char* field_kind_name(FieldSpec::Kind kind) {
  switch (kind) {
    case FieldSpec::Kind::String: return "string";
    case FieldSpec::Kind::Int: return "integer";
    case FieldSpec::Kind::Float: return "number";
    case FieldSpec::Kind::Bool: return "boolean";
    case FieldSpec::Kind::List: return "list";
  }
  return "?";
}

void check_known_fields(const std::string& command, const std::vector<FieldSpec>& specs, const FieldValues& given) {
  for (const auto& v : given) {
    bool known = false;
    for (const auto& s : specs) known = known || s.key == v.key;
    require(known, "emo " + command, "--" + v.key, "no such setting");
  }
}

const std::string& field_text(const std::string& key, const std::vector<std::string>& values) {
  require(values.size() == 1, "--" + key, "", "expected one value, got ", values.size());
  return values[0];
}

int64_t field_int(const std::string& key, const std::vector<std::string>& values) {
  const std::string& text = field_text(key, values);
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(text.c_str(), &end, 10);
  require(!text.empty() && *end == '\0' && errno == 0, "--" + key, "", "expected an integer, got \"", text, "\"");
  return v;
}

uint64_t field_count(const std::string& key, const std::vector<std::string>& values) {
  const int64_t v = field_int(key, values);
  require(v >= 0, "--" + key, "", "expected a non-negative integer, got ", v);
  return uint64_t(v);
}

double field_float(const std::string& key, const std::vector<std::string>& values) {
  const std::string& text = field_text(key, values);
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(text.c_str(), &end);
  require(!text.empty() && *end == '\0' && errno == 0, "--" + key, "", "expected a number, got \"", text, "\"");
  return v;
}

std::vector<std::string> split_items(const std::vector<std::string>& values, char delimiter) {
  std::vector<std::string> out;
  for (const auto& v : values)
    for (size_t start = 0; start <= v.size();) {
      size_t at = v.find(delimiter, start);
      out.push_back(v.substr(start, at == std::string::npos ? std::string::npos : at - start));
      if (at == std::string::npos) break;
      start = at + 1;
    }
  return out;
}

std::pair<std::string, std::string> split_named(const std::string& text) {
  const size_t eq = text.find('=');
  if (eq == std::string::npos) return {"", text};
  return {text.substr(0, eq), text.substr(eq + 1)};
}

std::vector<int64_t> parse_id_list(const std::string& text, const std::string& flag) {
  std::string list;
  for (char c : text)
    if (c != '[' && c != ']' && !std::isspace(static_cast<unsigned char>(c))) list.push_back(c);
  std::vector<int64_t> ids;
  for (size_t pos = 0; pos <= list.size();) {
    size_t comma = list.find(',', pos);
    std::string item = list.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    try {
      size_t used = 0;
      ids.push_back(std::stoll(item, &used));
      if (used != item.size()) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      fail(flag, item, "not a token id");
    }
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return ids;
}

std::function<std::string(const std::string&)> checked_by(std::function<void(const std::string&)> parse) {
  return [parse](const std::string& text) {
    try {
      parse(text);
      return std::string();
    } catch (const Error& e) {
      return e.field().empty() ? e.detail() : cat(e.field(), ": ", e.detail());
    } catch (const std::exception&) {  // std::stod and friends
      return cat(text, ": expected a number");
    }
  };
}

std::vector<std::pair<std::string, std::string>> parse_sets(const std::vector<std::string>& sets, const std::string& flag) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& s : sets) {
    auto eq = s.find('=');
    if (eq == std::string::npos || eq == 0) fail(flag, s, "expected key=value");
    out.emplace_back(s.substr(0, eq), s.substr(eq + 1));
  }
  return out;
}

}  // namespace emo
