#include "core/util/fields.h"

#include <cerrno>
#include <cstdlib>

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

double field_float(const std::string& key, const std::vector<std::string>& values) {
  const std::string& text = field_text(key, values);
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(text.c_str(), &end);
  require(!text.empty() && *end == '\0' && errno == 0, "--" + key, "", "expected a number, got \"", text, "\"");
  return v;
}

}  // namespace emo
