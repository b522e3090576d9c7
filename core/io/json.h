// JSON with the errors users need: the file, the byte offset, the key. Objects keep their
// key order (ordered_json) so a config.json we rewrite keeps the user's layout.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace emo {

using Json = nlohmann::ordered_json;

// Parses JSON text; duplicate keys in any object are an error (nlohmann would silently
// keep the last one, and a header that names a tensor twice is lying about its content).
Json parse_json(std::string_view text, const std::string& file);
Json load_json_file(const std::string& path);

// Compact JSON with keys sorted at every level: the form hashed for content hashes.
std::string canonical_json(const Json& j);

// Typed access that reports the file and the key on a missing key or a wrong type.
const Json& json_member(const Json& obj, const std::string& key, const std::string& file);
std::string json_type_name(const Json& j);
// A member that must be an integer in [min, max] / a string: emo::Error naming file and key.
int64_t json_int(const Json& obj, const std::string& key, const std::string& file, int64_t min, int64_t max);
std::string json_string(const Json& obj, const std::string& key, const std::string& file);

}  // namespace emo
