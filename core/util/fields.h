// A request's fields, described once: key, kind, choices, help, whether the field names a
// file the request reads. A command's flags are made from them (cli/request_flags.h) and so
// are a recipe step's settings (recipes/recipe.h), and a step builds its request from its
// settings through the same setters a command uses: no argv round trip, no second parser.
//
//   const RequestSpec<MergeRequest>& spec = merge_request_spec();   // merge/merge.h
//   MergeRequest r = build_request(spec, {{"base", {"out/tiny"}}, {"module", {"m1", "m2"}}});
#pragma once

#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace emo {

struct FieldSpec {
  enum class Kind { String, Int, Float, Bool, List };
  std::string key;  // the flag without "--", the recipe setting
  Kind kind = Kind::String;
  bool required = false;
  bool input_path = false;  // a file or checkpoint the request reads: its hash enters a recipe's cache key
  std::vector<std::string> choices;  // the allowed values, when the field has a fixed set
  std::string help;
  // The field's own check of a value ("" when fine, else why not), where it has one: a recipe
  // is refused for what the command would refuse, before any step runs.
  std::function<std::string(const std::string&)> check;
  bool named_path = false;  // an input path may carry a task name: NAME=FILE (emo select's tasks)
  std::string value_name;   // how --help names a checked value ("SIZE"); "" for none
  bool non_negative = false;  // an Int that is a count or a seed (--help: UINT)
  // False for what the caller owns rather than the request's settings: where the output goes
  // and whether to replace it (a recipe's runner decides those), accepting foreign inputs.
  bool recipe_setting = true;
  // A List whose values may also come joined in one: --keep 8,16,32 (the setter splits with
  // split_items, since a recipe may write either form).
  char delimiter = 0;
  std::string group;                  // --help's heading for the flag ("" : Options)
  std::vector<std::string> excluded;  // keys that may not be given with this one

  // Modifiers, so a field reads as one row: field("base", Kind::String, "...").must().reads().
  FieldSpec& must() { required = true; return *this; }
  FieldSpec& reads() { input_path = true; return *this; }
  FieldSpec& one_of(std::vector<std::string> values) { choices = std::move(values); return *this; }
  FieldSpec& caller_owned() { recipe_setting = false; return *this; }
  FieldSpec& count() { non_negative = true; return *this; }
  FieldSpec& comma_list() { delimiter = ','; return *this; }
  FieldSpec& in(std::string heading) { group = std::move(heading); return *this; }
  FieldSpec& excludes(std::vector<std::string> keys) { excluded = std::move(keys); return *this; }
  FieldSpec& checked(std::function<std::string(const std::string&)> f, std::string name = "") {
    check = std::move(f);
    value_name = std::move(name);
    return *this;
  }
};
inline FieldSpec field(std::string key, FieldSpec::Kind kind, std::string help) {
  FieldSpec f;
  f.key = std::move(key);
  f.kind = kind;
  f.help = std::move(help);
  return f;
}
const char* field_kind_name(FieldSpec::Kind kind);  // "string", "integer", "number", "boolean", "list"

// A field's values as given: the strings after its flag (none for a boolean flag that is on).
struct FieldValue {
  std::string key;
  std::vector<std::string> values;
};
using FieldValues = std::vector<FieldValue>;

template <class R>
struct Field {
  FieldSpec spec;
  std::function<void(R& request, const std::vector<std::string>& values)> set;
};

// Conversions for setters: emo::Error naming --key and the value when it is not one.
int64_t field_int(const std::string& key, const std::vector<std::string>& values);
uint64_t field_count(const std::string& key, const std::vector<std::string>& values);  // >= 0
double field_float(const std::string& key, const std::vector<std::string>& values);
const std::string& field_text(const std::string& key, const std::vector<std::string>& values);

// A row that sets one member of R from its value: text or a path, an integer (a count when
// unsigned), a number, or a switch (a boolean field that is on sets true).
template <class R, class T>
Field<R> member_field(FieldSpec spec, T R::*member) {
  const std::string key = spec.key;
  return {std::move(spec), [key, member](R& r, const std::vector<std::string>& v) {
            if constexpr (std::is_same_v<T, bool>) r.*member = true;
            else if constexpr (std::is_floating_point_v<T>) r.*member = T(field_float(key, v));
            else if constexpr (std::is_integral_v<T> && std::is_unsigned_v<T>) r.*member = T(field_count(key, v));
            else if constexpr (std::is_integral_v<T>) r.*member = T(field_int(key, v));
            else r.*member = T(field_text(key, v));
          }};
}

// A field of a part of R (its examples, its budget) as a field of R: shared groups of
// fields are written once, for the part.
template <class R, class S>
void append_fields(std::vector<Field<R>>& out, const std::vector<Field<S>>& fields, S R::*part) {
  for (const auto& f : fields)
    out.push_back({f.spec, [set = f.set, part](R& r, const std::vector<std::string>& v) { set(r.*part, v); }});
}

// The field row of `key` (emo::Error when there is none: a bug in the caller).
template <class R>
const FieldSpec& field_spec(const std::vector<Field<R>>& fields, const std::string& key) {
  for (const auto& f : fields)
    if (f.spec.key == key) return f.spec;
  throw std::logic_error("no field " + key);
}

// Sets what `given` holds onto `request`; setters run in the order the fields are declared
// (not as given), so a request does not depend on the order of its flags.
template <class R>
void apply_fields(const std::vector<Field<R>>& fields, const FieldValues& given, R& request) {
  for (const auto& f : fields)
    for (const auto& v : given)
      if (v.key == f.spec.key) f.set(request, v.values);
}

// A capability's request, described: the command that runs it, its one-line summary, the
// --help footer (what it writes, then an example), its fields in the order --help lists them.
template <class R>
struct RequestSpec {
  std::string command, summary, footer;
  std::vector<Field<R>> fields;

  std::vector<FieldSpec> specs() const {
    std::vector<FieldSpec> out;
    for (const auto& f : fields) out.push_back(f.spec);
    return out;
  }
};

// The spec `Make` builds, built on first use and kept: a request's `*_request_spec()`.
template <class R, RequestSpec<R> (*Make)()>
const RequestSpec<R>& built_once() {
  static const RequestSpec<R> spec = Make();
  return spec;
}

// emo::Error naming --key when `given` holds a key the request has no field for.
void check_known_fields(const std::string& command, const std::vector<FieldSpec>& specs, const FieldValues& given);

// The request `given` describes, on R's defaults (apply_fields).
template <class R>
R build_request(const RequestSpec<R>& spec, const FieldValues& given) {
  check_known_fields(spec.command, spec.specs(), given);
  R request;
  apply_fields(spec.fields, given, request);
  return request;
}

// "key=value" pairs from repeated --set (or `flag`) flags; emo::Error for a malformed one.
std::vector<std::pair<std::string, std::string>> parse_sets(const std::vector<std::string>& sets,
                                                            const std::string& flag = "--set");

// A list field's values with joined ones split at `delimiter`: {"8,16", "32"} -> {"8", "16", "32"}.
std::vector<std::string> split_items(const std::vector<std::string>& values, char delimiter = ',');

// NAME=VALUE as given to a named path (--data, --stats) or a weight: {"", text} without '='.
std::pair<std::string, std::string> split_named(const std::string& text);

// "1,2,3" or "[1, 2, 3]" -> ids; emo::Error naming `flag` and the bad item.
std::vector<int64_t> parse_id_list(const std::string& text, const std::string& flag);

// A field check from a parser that throws emo::Error: "" when the value parses, else the
// error's field and detail (CLI11 and recipes put the flag's name before it).
std::function<std::string(const std::string&)> checked_by(std::function<void(const std::string&)> parse);

}  // namespace emo
