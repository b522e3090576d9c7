#include "recipes/recipe.h"

#include <algorithm>
#include <regex>
#include <set>

#include "core/io/sha256.h"
#include "core/util/error.h"

namespace emo {

const FieldSpec* StepTypeSpec::find(const std::string& key) const {
  for (const auto& s : settings)
    if (s.key == key) return &s;
  return nullptr;
}

const StepTypeSpec* find_step_type(const StepCatalogue& catalogue, const std::string& command) {
  for (const auto& t : catalogue)
    if (t.command == command) return &t;
  return nullptr;
}

std::string SourcePos::where() const {
  if (line <= 0) return file;
  return cat(file, ":", line, ":", column);
}

const SettingValue* RecipeStep::setting(const std::string& key) const {
  for (const auto& s : with)
    if (s.key == key) return &s;
  return nullptr;
}

const RecipeStep* Recipe::step(const std::string& id) const {
  for (const auto& s : steps)
    if (s.id == id) return &s;
  return nullptr;
}

const RecipeInput* Recipe::input(const std::string& name) const {
  for (const auto& i : inputs)
    if (i.name == name) return &i;
  return nullptr;
}

std::vector<Reference> find_references(const std::string& text) {
  std::vector<Reference> refs;
  size_t pos = 0;
  while ((pos = text.find("${", pos)) != std::string::npos) {
    size_t close = text.find('}', pos);
    Reference r;
    r.begin = pos;
    r.end = close == std::string::npos ? text.size() : close + 1;
    std::string body = text.substr(pos + 2, close == std::string::npos ? std::string::npos : close - pos - 2);
    size_t dot = body.find('.');
    r.kind = dot == std::string::npos ? body : body.substr(0, dot);
    r.name = dot == std::string::npos ? "" : body.substr(dot + 1);
    refs.push_back(r);
    pos = r.end;
  }
  return refs;
}

std::string replace_references(const std::string& text,
                               const std::function<std::optional<std::string>(const Reference&)>& value) {
  std::string out = text;
  auto refs = find_references(text);
  for (auto it = refs.rbegin(); it != refs.rend(); ++it)  // from the back: earlier offsets stay valid
    if (auto v = value(*it)) out.replace(it->begin, it->end - it->begin, *v);
  return out;
}

namespace {

// Everything the loader needs to say where a problem is.
class Loader {
 public:
  Loader(const fs::path& file, const StepCatalogue& catalogue, const RecipeLoadOptions& options)
      : file_(file.string()), dir_(fs::absolute(file).parent_path()), catalogue_(catalogue), options_(options) {}

  Recipe load();

 private:
  SourcePos pos(const YAML::Node& n) const {
    YAML::Mark m = n.Mark();
    return {file_, m.line + 1, m.column + 1};
  }
  template <typename... Args>
  [[noreturn]] void error(const SourcePos& p, const std::string& field, const Args&... what) const {
    fail(p.where(), field, what...);
  }
  template <typename... Args>
  [[noreturn]] void error(const YAML::Node& n, const std::string& field, const Args&... what) const {
    error(pos(n), field, what...);
  }

  void check_keys(const YAML::Node& map, const std::string& field, const std::set<std::string>& allowed) const;
  std::string scalar(const YAML::Node& n, const std::string& field) const;
  // Names that become path components (the recipe name, step ids): letters, digits, -
  // and _, starting with a letter, so none can lead outside its directory.
  std::string identifier(const YAML::Node& n, const std::string& field) const;
  std::string key_text(const YAML::Node& key, const std::string& field) const;
  std::string expand_variables(const std::string& text) const;
  fs::path resolve_path(const std::string& path) const;
  void load_inputs(const YAML::Node& n);
  void load_steps(const YAML::Node& n);
  SettingValue load_setting(const std::string& key, const YAML::Node& value, const SourcePos& key_pos,
                            const std::string& field) const;
  void apply_overrides();
  void check_step(RecipeStep& step, const std::string& field);
  void check_value(RecipeStep& step, const FieldSpec& spec, SettingValue& v, const std::string& field);
  void check_choice(const FieldSpec& spec, const std::string& item, const SourcePos& p, const std::string& field) const;
  void check_references(const RecipeStep* step, const std::string& text, const SourcePos& p, const std::string& field,
                        std::vector<std::string>* depends);
  void order_steps();
  void load_outputs(const YAML::Node& n);

  std::string file_;
  fs::path dir_;
  const StepCatalogue& catalogue_;
  const RecipeLoadOptions& options_;
  Recipe r_;
  std::map<std::string, std::string> step_field_;  // step id -> "steps[i]" for messages
};

void Loader::check_keys(const YAML::Node& map, const std::string& field, const std::set<std::string>& allowed) const {
  for (auto it = map.begin(); it != map.end(); ++it) {
    std::string key = key_text(it->first, field);
    if (!allowed.count(key)) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      error(it->first, field.empty() ? key : field + "." + key, "unknown key (expected one of: ", list, ")");
    }
  }
}

// A mapping key: a name. YAML allows lists and mappings as keys ("? - a"); a recipe does not.
std::string Loader::key_text(const YAML::Node& key, const std::string& field) const {
  if (!key.IsScalar()) error(key, field, "expected a name as the key, not a list or mapping");
  return key.Scalar();
}

std::string Loader::scalar(const YAML::Node& n, const std::string& field) const {
  if (!n.IsScalar()) error(n, field, "expected a string");
  return n.Scalar();
}

std::string Loader::identifier(const YAML::Node& n, const std::string& field) const {
  static const std::regex id_re("[A-Za-z][A-Za-z0-9_-]*");
  std::string id = scalar(n, field);
  if (!std::regex_match(id, id_re)) error(n, field, "\"", id, "\": use letters, digits, - and _, starting with a letter");
  return id;
}

// ${emo.data} and the like become their values; ${inputs.X}, ${steps.Y.out} and
// ${workdir} stay for the runner.
std::string Loader::expand_variables(const std::string& text) const {
  return replace_references(text, [&](const Reference& ref) -> std::optional<std::string> {
    auto v = options_.variables.find(ref.name.empty() ? ref.kind : ref.kind + "." + ref.name);
    if (v == options_.variables.end()) return std::nullopt;
    return v->second;
  });
}

fs::path Loader::resolve_path(const std::string& path) const {
  fs::path p(path);
  return (p.is_absolute() ? p : dir_ / p).lexically_normal();
}

Recipe Loader::load() {
  r_.file = file_;
  r_.catalogue = catalogue_;
  std::string text = read_text_file(file_);
  r_.file_hash = "sha256:" + sha256_hex(text);
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    fail(cat(file_, ":", e.mark.line + 1, ":", e.mark.column + 1), "", "not valid YAML: ", e.msg);
  }
  if (!root.IsMap()) error(SourcePos{file_, 1, 1}, "", "expected a mapping with name, inputs, steps and outputs");
  check_keys(root, "", {"name", "description", "inputs", "steps", "outputs"});
  if (!root["name"]) error(SourcePos{file_, 1, 1}, "name", "missing: every recipe has a name");
  r_.name = identifier(root["name"], "name");  // the default work directory, out/<name>
  if (root["description"]) r_.description = scalar(root["description"], "description");
  if (root["inputs"]) load_inputs(root["inputs"]);
  for (const auto& [name, path] : options_.input_paths)
    if (!r_.input(name)) fail("--input", name, "the recipe has no input \"", name, "\"");
  if (!root["steps"]) error(SourcePos{file_, 1, 1}, "steps", "missing: a recipe needs at least one step");
  load_steps(root["steps"]);
  apply_overrides();
  for (size_t i = 0; i < r_.steps.size(); ++i) check_step(r_.steps[i], step_field_[r_.steps[i].id]);
  order_steps();
  if (root["outputs"]) load_outputs(root["outputs"]);
  return std::move(r_);
}

void Loader::load_inputs(const YAML::Node& n) {
  if (!n.IsMap()) error(n, "inputs", "expected a mapping from name to path");
  for (auto it = n.begin(); it != n.end(); ++it) {
    RecipeInput in;
    in.name = key_text(it->first, "inputs");
    std::string field = "inputs." + in.name;
    in.pos = pos(it->first);
    const YAML::Node v = it->second;
    YAML::Node path_node = v;
    if (v.IsMap()) {
      check_keys(v, field, {"path", "hash"});
      if (!v["path"]) error(v, field + ".path", "missing");
      path_node.reset(v["path"]);  // rebind: yaml-cpp's operator= would overwrite the mapping
      if (v["hash"]) {
        in.pinned_hash = scalar(v["hash"], field + ".hash");
        static const std::regex hash_re("sha256:[0-9a-f]{64}");
        if (!std::regex_match(in.pinned_hash, hash_re))
          error(v["hash"], field + ".hash", "expected sha256: and 64 hex digits, got \"", in.pinned_hash, "\"");
      }
    }
    in.path = expand_variables(scalar(path_node, field));
    for (const auto& ref : find_references(in.path))
      error(path_node, field, "unknown variable ${", ref.kind, ref.name.empty() ? "" : "." + ref.name,
            "} (inputs may use ${emo.data})");
    in.resolved = resolve_path(in.path);
    auto given = options_.input_paths.find(in.name);
    if (given != options_.input_paths.end()) {
      in.path = given->second;
      in.resolved = fs::absolute(given->second).lexically_normal();
    }
    std::error_code ec;
    if (!fs::exists(in.resolved, ec)) {
      if (given != options_.input_paths.end()) fail("--input", in.name, "no such file or directory: ", in.resolved.string());
      error(path_node, field, "no such file or directory: ", in.resolved.string(), " (give another with --input ",
            in.name, "=PATH)");
    }
    if (r_.input(in.name)) error(it->first, field, "defined twice");
    r_.inputs.push_back(std::move(in));
  }
}

void Loader::load_steps(const YAML::Node& n) {
  if (!n.IsSequence() || n.size() == 0) error(n, "steps", "expected a non-empty list of steps");
  for (size_t i = 0; i < n.size(); ++i) {
    const YAML::Node s = n[i];
    std::string field = cat("steps[", i, "]");
    if (!s.IsMap()) error(s, field, "expected a mapping with id, command and with");
    check_keys(s, field, {"id", "command", "with", "description"});
    RecipeStep step;
    step.pos = pos(s);
    if (!s["id"]) error(s, field + ".id", "missing");
    step.id = identifier(s["id"], field + ".id");
    if (r_.step(step.id)) error(s["id"], field + ".id", "\"", step.id, "\" is used by an earlier step");
    field += " (" + step.id + ")";
    if (!s["command"]) error(s, field + ".command", "missing");
    step.command = scalar(s["command"], field + ".command");
    const StepTypeSpec* type = find_step_type(catalogue_, step.command);
    if (!type) {
      std::string list;
      for (const auto& t : catalogue_) list += (list.empty() ? "" : ", ") + t.command;
      error(s["command"], field + ".command", "unknown command \"", step.command, "\" (steps can run: ", list, ")");
    }
    if (const YAML::Node w = s["with"]) {
      if (!w.IsMap()) error(w, field + ".with", "expected a mapping of the command's settings");
      for (auto it = w.begin(); it != w.end(); ++it) {
        std::string key = key_text(it->first, field + ".with");
        if (step.setting(key)) error(it->first, field + ".with." + key, "given twice");
        step.with.push_back(load_setting(key, it->second, pos(it->first), field + ".with." + key));
      }
    }
    step_field_[step.id] = field;
    r_.steps.push_back(std::move(step));
  }
}

SettingValue Loader::load_setting(const std::string& key, const YAML::Node& value, const SourcePos& key_pos,
                                  const std::string& field) const {
  SettingValue v;
  v.key = key;
  v.key_pos = key_pos;
  v.pos = key_pos.line > 0 ? pos(value) : key_pos;  // a --set value has no place in the file
  auto add_scalar = [&](const YAML::Node& n) {
    if (!n.IsScalar()) error(n, field, "expected a value or a list of values, not a mapping or nested list");
    v.items.push_back(expand_variables(n.Scalar()));
  };
  if (value.IsSequence()) {
    v.is_list = true;
    for (size_t i = 0; i < value.size(); ++i) add_scalar(value[i]);
  } else if (value.IsNull()) {
    error(v.pos, field, "has no value");
  } else {
    add_scalar(value);
    const std::string& s = v.items[0];
    if (value.Tag() != "!" && (s == "true" || s == "false")) {
      v.is_bool = true;
      v.bool_value = s == "true";
    }
  }
  return v;
}

void Loader::apply_overrides() {
  for (const auto& [lhs, value] : options_.overrides) {
    std::string field = "--set " + lhs;
    size_t dot = lhs.find('.');
    if (dot == std::string::npos) fail("--set", lhs, "expected STEP.KEY=VALUE");
    std::string id = lhs.substr(0, dot), key = lhs.substr(dot + 1);
    auto step = std::find_if(r_.steps.begin(), r_.steps.end(), [&](const RecipeStep& s) { return s.id == id; });
    if (step == r_.steps.end()) fail("--set", lhs, "the recipe has no step \"", id, "\"");
    YAML::Node node;
    try {
      node = YAML::Load(value);
    } catch (const YAML::Exception& e) {
      fail("--set", lhs, "not a YAML value: ", e.msg);
    }
    SettingValue v = load_setting(key, node, SourcePos{"--set " + lhs, 0, 0}, field);
    auto existing = std::find_if(step->with.begin(), step->with.end(), [&](const SettingValue& s) { return s.key == key; });
    if (existing != step->with.end()) *existing = v;
    else step->with.push_back(v);
  }
}

void Loader::check_step(RecipeStep& step, const std::string& field) {
  const StepTypeSpec& type = *find_step_type(catalogue_, step.command);
  for (auto& v : step.with) {
    std::string f = field + ".with." + v.key;
    if (v.key == "out")
      error(v.key_pos, f, "the runner chooses each step's output (WORKDIR/", step.id, "); refer to it as ${steps.",
            step.id, ".out}");
    const FieldSpec* spec = type.find(v.key);
    if (!spec) error(v.key_pos, f, "`", step.command, "` has no setting \"", v.key, "\" (`emo run --reference` lists them)");
    check_value(step, *spec, v, f);
  }
  for (const auto& spec : type.settings) {
    if (spec.required && !step.setting(spec.key))
      error(step.pos, field + ".with", "`", step.command, "` needs \"", spec.key, "\" (", spec.help, ")");
    for (const auto& other : spec.excluded)
      if (step.setting(spec.key) && step.setting(other))
        error(step.pos, field + ".with", "`", step.command, "` takes \"", spec.key, "\" or \"", other,
              "\", not both");
  }
}

void Loader::check_value(RecipeStep& step, const FieldSpec& spec, SettingValue& v, const std::string& field) {
  using K = FieldSpec::Kind;
  if (v.is_list && spec.kind != K::List) error(v.pos, field, "expected a single ", field_kind_name(spec.kind), ", got a list");
  static const std::regex int_re(R"([-+]?[0-9]+)");
  static const std::regex float_re(R"([-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?)");
  for (auto& item : v.items) {
    if (spec.kind == K::Int && !std::regex_match(item, int_re))
      error(v.pos, field, "expected an integer, got \"", item, "\"");
    if (spec.kind == K::Float && !std::regex_match(item, float_re))
      error(v.pos, field, "expected a number, got \"", item, "\"");
    if (spec.kind == K::Bool && !v.is_bool) error(v.pos, field, "expected true or false, got \"", item, "\"");
    if (!spec.choices.empty()) check_choice(spec, item, v.pos, field);
    check_references(&step, item, v.pos, field, &step.depends_on);
    if (spec.check && find_references(item).empty())
      if (std::string why = spec.check(item); !why.empty()) error(v.pos, field, why);
    if (spec.input_path && find_references(item).empty()) {
      // Paths in the file are relative to it (as inputs are); from --set, to the cwd.
      auto [name, path] = split_path_name(spec, item);
      fs::path p = v.pos.line > 0 ? resolve_path(path) : fs::absolute(path).lexically_normal();
      std::error_code ec;
      if (!fs::exists(p, ec)) error(v.pos, field, "no such file or directory: ", p.string());
      item = name + p.string();
    }
  }
}

// A list flag may take "a,b" in one value (CLI11 splits at its delimiter): each part counts.
void Loader::check_choice(const FieldSpec& spec, const std::string& item, const SourcePos& p,
                          const std::string& field) const {
  size_t start = 0;
  while (start <= item.size()) {
    size_t comma = spec.kind == FieldSpec::Kind::List ? item.find(',', start) : std::string::npos;
    std::string part = item.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (std::find(spec.choices.begin(), spec.choices.end(), part) == spec.choices.end()) {
      std::string list;
      for (const auto& c : spec.choices) list += (list.empty() ? "" : ", ") + c;
      error(p, field, "\"", part, "\" is not one of: ", list);
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
}

void Loader::check_references(const RecipeStep* step, const std::string& text, const SourcePos& p,
                              const std::string& field, std::vector<std::string>* depends) {
  for (const auto& ref : find_references(text)) {
    std::string shown = text.substr(ref.begin, ref.end - ref.begin);
    if (shown.back() != '}') error(p, field, "unterminated reference \"", shown, "\"");
    if (ref.kind == "inputs") {
      if (!r_.input(ref.name)) error(p, field, shown, ": the recipe has no input \"", ref.name, "\"");
    } else if (ref.kind == "steps") {
      size_t dot = ref.name.rfind('.');
      std::string id = dot == std::string::npos ? ref.name : ref.name.substr(0, dot);
      if (dot == std::string::npos || ref.name.substr(dot + 1) != "out")
        error(p, field, shown, ": a step is referred to as ${steps.ID.out}");
      if (!r_.step(id)) error(p, field, shown, ": the recipe has no step \"", id, "\"");
      if (step && id == step->id) error(p, field, shown, ": a step cannot use its own output");
      if (depends && std::find(depends->begin(), depends->end(), id) == depends->end()) depends->push_back(id);
    } else if (ref.kind != "workdir") {
      error(p, field, shown, ": unknown reference (use ${inputs.NAME}, ${steps.ID.out}, ${emo.data} or ${workdir})");
    }
  }
}

// Kahn's algorithm, taking steps in file order whenever several are ready, so the run
// order is the written order unless a reference says otherwise.
void Loader::order_steps() {
  std::vector<RecipeStep> ordered;
  std::set<std::string> done;
  std::vector<bool> taken(r_.steps.size(), false);
  while (ordered.size() < r_.steps.size()) {
    bool progress = false;
    for (size_t i = 0; i < r_.steps.size(); ++i) {
      if (taken[i]) continue;
      const auto& deps = r_.steps[i].depends_on;
      if (std::all_of(deps.begin(), deps.end(), [&](const std::string& d) { return done.count(d) > 0; })) {
        taken[i] = true;
        done.insert(r_.steps[i].id);
        ordered.push_back(r_.steps[i]);
        progress = true;
        break;
      }
    }
    if (progress) continue;
    // Every remaining step waits on another: follow the first one's dependencies to a cycle.
    size_t first = size_t(std::find(taken.begin(), taken.end(), false) - taken.begin());
    std::vector<std::string> chain{r_.steps[first].id};
    std::string cur = chain[0];
    while (true) {
      const RecipeStep* s = r_.step(cur);
      std::string next;
      for (const auto& d : s->depends_on)
        if (!done.count(d)) { next = d; break; }
      size_t seen = size_t(std::find(chain.begin(), chain.end(), next) - chain.begin());
      chain.push_back(next);
      if (seen + 1 < chain.size()) {
        std::string path;
        for (size_t i = seen; i < chain.size(); ++i) path += (path.empty() ? "" : " -> ") + chain[i];
        const RecipeStep* at = r_.step(chain[seen]);
        error(at->pos, step_field_[at->id], "steps depend on each other in a cycle: ", path);
      }
      cur = next;
    }
  }
  r_.steps = std::move(ordered);
}

void Loader::load_outputs(const YAML::Node& n) {
  if (!n.IsMap()) error(n, "outputs", "expected a mapping from name to ${steps.ID.out}");
  for (auto it = n.begin(); it != n.end(); ++it) {
    RecipeOutput out;
    out.name = key_text(it->first, "outputs");
    std::string field = "outputs." + out.name;
    out.pos = pos(it->first);
    YAML::Node ref = it->second;
    if (it->second.IsMap()) {
      check_keys(it->second, field, {"from", "show"});
      if (!it->second["from"]) error(it->second, field + ".from", "missing");
      ref.reset(it->second["from"]);  // rebind, not assign (see load_inputs)
      if (it->second["show"]) out.show = scalar(it->second["show"], field + ".show");
    }
    out.ref = scalar(ref, field);
    auto refs = find_references(out.ref);
    if (refs.size() != 1 || refs[0].begin != 0 || refs[0].end != out.ref.size())
      error(ref, field, "expected one reference, ${steps.ID.out} or ${inputs.NAME}");
    check_references(nullptr, out.ref, pos(ref), field, nullptr);
    r_.outputs.push_back(std::move(out));
  }
}

}  // namespace

Recipe load_recipe(const fs::path& file, const StepCatalogue& catalogue, const RecipeLoadOptions& options) {
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) fail(file.string(), "", "no such recipe file");
  return Loader(file, catalogue, options).load();
}

std::pair<std::string, std::string> split_path_name(const FieldSpec& spec, const std::string& value) {
  const size_t eq = spec.named_path ? value.find('=') : std::string::npos;
  if (eq == std::string::npos) return {"", value};
  return {value.substr(0, eq + 1), value.substr(eq + 1)};
}

}  // namespace emo
