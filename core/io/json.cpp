#include "core/io/json.h"

#include <set>
#include <vector>

#include "core/util/error.h"
#include "core/util/fs.h"

namespace emo {

Json parse_json(std::string_view text, const std::string& file) {
  std::vector<std::set<std::string>> keys_at_depth;
  std::string duplicate;
  auto callback = [&](int depth, Json::parse_event_t event, Json& parsed) {
    switch (event) {
      case Json::parse_event_t::object_start:
        keys_at_depth.emplace_back();
        break;
      case Json::parse_event_t::object_end:
        if (!keys_at_depth.empty()) keys_at_depth.pop_back();
        break;
      case Json::parse_event_t::key:
        if (!keys_at_depth.empty() && !keys_at_depth.back().insert(parsed.get<std::string>()).second &&
            duplicate.empty())
          duplicate = parsed.get<std::string>();
        break;
      default:
        break;
    }
    (void)depth;
    return true;
  };
  Json j;
  try {
    j = Json::parse(text.begin(), text.end(), callback);
  } catch (const nlohmann::json::parse_error& e) {
    fail(file, "", "not valid JSON (byte ", e.byte, "): ", e.what());
  } catch (const nlohmann::json::exception& e) {
    fail(file, "", "not valid JSON: ", e.what());
  }
  if (!duplicate.empty()) fail(file, duplicate, "key appears more than once");
  return j;
}

Json load_json_file(const std::string& path) { return parse_json(read_text_file(path), path); }

std::string canonical_json(const Json& j) {
  // nlohmann::json (std::map based) sorts keys; round-tripping through it canonicalises.
  return nlohmann::json::parse(j.dump()).dump();
}

std::string json_type_name(const Json& j) { return j.type_name(); }

const Json& json_member(const Json& obj, const std::string& key, const std::string& file) {
  if (!obj.is_object()) fail(file, "", "expected a JSON object, found ", obj.type_name());
  auto it = obj.find(key);
  if (it == obj.end()) fail(file, key, "missing");
  return *it;
}

int64_t json_int(const Json& obj, const std::string& key, const std::string& file, int64_t min, int64_t max) {
  const Json& v = json_member(obj, key, file);
  // Unsigned beyond int64 first: get<int64_t>() of it would wrap.
  if (!v.is_number_integer() || (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX)))
    fail(file, key, "expected an integer, found ", v.type_name(), " ", v.dump());
  int64_t i = v.get<int64_t>();
  if (i < min || i > max) fail(file, key, i, " is outside [", min, ", ", max, "]");
  return i;
}

std::string json_string(const Json& obj, const std::string& key, const std::string& file) {
  const Json& v = json_member(obj, key, file);
  if (!v.is_string()) fail(file, key, "expected a string, found ", v.type_name());
  return v.get<std::string>();
}

}  // namespace emo
