#include "core/io/yaml.h"

#include <cmath>
#include <regex>

#include "core/text/utf8.h"
#include "core/util/error.h"
#include "core/util/fs.h"

namespace emo {

YAML::Node load_yaml_text(const std::string& text, const std::string& file) {
  // yaml-cpp passes any bytes through; JSON strings must be UTF-8 (found by fuzz_experts:
  // a scalar with byte 0xFB made a later message's dump() throw).
  if (auto bad = first_invalid_utf8(text)) fail(file, cat("byte ", *bad), "not valid UTF-8 (YAML files are UTF-8 text)");
  try {
    return YAML::Load(text);
  } catch (const YAML::Exception& e) {
    fail(file, cat("line ", e.mark.line + 1, ", column ", e.mark.column + 1), "not valid YAML: ", e.msg);
  }
}

YAML::Node load_yaml_file(const std::string& path) { return load_yaml_text(read_text_file(path), path); }

std::string yaml_position(const YAML::Node& node) {
  YAML::Mark m = node.Mark();
  if (m.line < 0) return "";
  return cat("line ", m.line + 1, ", column ", m.column + 1);
}

namespace {

Json scalar_to_json(const YAML::Node& n) {
  const std::string& s = n.Scalar();
  if (n.Tag() == "!") return s;  // quoted: always a string
  static const std::regex int_re(R"([-+]?[0-9]+)");
  static const std::regex float_re(R"([-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?)");
  if (s == "null" || s == "Null" || s == "NULL" || s == "~" || s.empty()) return nullptr;
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  if (std::regex_match(s, int_re)) {
    try {
      return std::stoll(s);
    } catch (const std::out_of_range&) {
      return s;
    }
  }
  if (std::regex_match(s, float_re)) {
    // Beyond double ("8E2240", found by fuzz_experts) stays a string, as out-of-range
    // integers do: the typed reader then names it as not a number.
    try {
      return std::stod(s);
    } catch (const std::out_of_range&) {
      return s;
    }
  }
  if (s == ".inf" || s == "+.inf" || s == ".Inf") return HUGE_VAL;
  if (s == "-.inf" || s == "-.Inf") return -HUGE_VAL;
  return s;
}

}  // namespace

Json yaml_to_json(const YAML::Node& node, const std::string& file) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return nullptr;
    case YAML::NodeType::Scalar:
      // yaml-cpp can turn control bytes of valid input into invalid UTF-8 (found by
      // fuzz_experts: "\x03\x00" in a plain scalar), so its output is checked as well.
      if (first_invalid_utf8(node.Scalar())) fail(file, yaml_position(node), "a scalar that is not valid UTF-8");
      return scalar_to_json(node);
    case YAML::NodeType::Sequence: {
      Json a = Json::array();
      for (const auto& item : node) a.push_back(yaml_to_json(item, file));
      return a;
    }
    case YAML::NodeType::Map: {
      Json o = Json::object();
      for (auto it = node.begin(); it != node.end(); ++it) {
        if (!it->first.IsScalar()) fail(file, yaml_position(it->first), "mapping keys must be plain strings");
        std::string key = it->first.Scalar();
        if (first_invalid_utf8(key)) fail(file, yaml_position(it->first), "a key that is not valid UTF-8");
        if (o.contains(key)) fail(file, cat(yaml_position(it->first), ": ", key), "key appears more than once");
        o[key] = yaml_to_json(it->second, file);
      }
      return o;
    }
  }
  return nullptr;
}

YAML::Node json_to_yaml(const Json& j) {
  if (j.is_null()) return YAML::Node(YAML::NodeType::Null);
  if (j.is_object()) {
    YAML::Node n(YAML::NodeType::Map);
    for (auto it = j.begin(); it != j.end(); ++it) n[it.key()] = json_to_yaml(it.value());
    return n;
  }
  if (j.is_array()) {
    YAML::Node n(YAML::NodeType::Sequence);
    for (const auto& v : j) n.push_back(json_to_yaml(v));
    return n;
  }
  if (j.is_boolean()) return YAML::Node(j.get<bool>());
  if (j.is_number_integer()) return YAML::Node(j.get<int64_t>());
  if (j.is_number_unsigned()) return YAML::Node(j.get<uint64_t>());
  if (j.is_number_float()) return YAML::Node(j.get<double>());
  return YAML::Node(j.get<std::string>());
}

}  // namespace emo
