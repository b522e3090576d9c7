// A request's fields, described once: key, kind, choices, help, whether the field names a
// file the request reads. A command's flags are made from them (cli/request_flags.h) and so
// are a recipe step's settings (recipes/recipe.h), and a step builds its request from its
// settings through the same setters a command uses: no argv round trip, no second parser.
//
//   const RequestSpec<MergeRequest>& spec = merge_request_spec();   // merge/merge.h
//   MergeRequest r = build_request(spec, {{"base", {"out/tiny"}}, {"module", {"m1", "m2"}}});
#pragma once

#include <functional>
#include <string>
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
  // False for what the caller owns rather than the request's settings: where the output goes
  // and whether to replace it (a recipe's runner decides those), accepting foreign inputs.
  bool recipe_setting = true;

  // Modifiers, so a field reads as one row: field("base", Kind::String, "...").must().reads().
  FieldSpec& must() { required = true; return *this; }
  FieldSpec& reads() { input_path = true; return *this; }
  FieldSpec& one_of(std::vector<std::string> values) { choices = std::move(values); return *this; }
  FieldSpec& caller_owned() { recipe_setting = false; return *this; }
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

// emo::Error naming --key when `given` holds a key the request has no field for.
void check_known_fields(const std::string& command, const std::vector<FieldSpec>& specs, const FieldValues& given);

// The request `given` describes, on R's defaults. Setters run in the order the fields are
// declared (not as given), so a request does not depend on the order of its flags.
template <class R>
R build_request(const RequestSpec<R>& spec, const FieldValues& given) {
  check_known_fields(spec.command, spec.specs(), given);
  R request;
  for (const auto& f : spec.fields)
    for (const auto& v : given)
      if (v.key == f.spec.key) f.set(request, v.values);
  return request;
}

// Conversions for setters: emo::Error naming --key and the value when it is not one.
int64_t field_int(const std::string& key, const std::vector<std::string>& values);
double field_float(const std::string& key, const std::vector<std::string>& values);
const std::string& field_text(const std::string& key, const std::vector<std::string>& values);

}  // namespace emo
