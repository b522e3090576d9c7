#include "recipes/runner.h"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <set>

#include "core/checkpoint/checkpoint.h"
#include "core/checkpoint/content_hash.h"
#include "core/checkpoint/provenance.h"
#include "core/io/sha256.h"
#include "core/io/yaml.h"
#include "core/util/error.h"
#include "core/util/progress.h"
#include "core/util/version.h"

namespace emo {

namespace {

constexpr const char* kRunLog = "run.jsonl";
constexpr int kCacheKeyVersion = 1;

// A tree hash of a directory that is not a checkpoint (an evaluation's tables): file
// names and their SHA-256 in name order, provenance.yaml left out.
std::string hash_directory(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file() && e.path().filename() != kProvenanceFile) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  std::string listing;
  for (const auto& f : files) listing += fs::relative(f, dir).generic_string() + "\t" + hash_file(f.string()) + "\n";
  return "sha256:" + sha256_hex(listing);
}

// A scalar member of a provenance mapping, "" when absent or not a scalar (provenance
// files come with downloaded checkpoints: their shape is not trusted).
std::string scalar_text(const YAML::Node& map, const char* key) {
  if (!map.IsMap()) return "";
  const YAML::Node v = map[key];
  return v && v.IsScalar() ? v.Scalar() : "";
}

// The provenance that describes `path`: a checkpoint's or step directory's own, or, for
// a file a step wrote, its step directory's (which names the file as output_file).
std::optional<Provenance> provenance_of(const fs::path& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) return Provenance::load(path);
  auto prov = Provenance::load(path.parent_path());
  if (prov && scalar_text(prov->extra, "output_file") == path.filename().string())
    return prov;
  return std::nullopt;
}

}  // namespace

std::string hash_path(const fs::path& path, bool recompute) {
  std::error_code ec;
  if (!fs::exists(path, ec)) fail(path.string(), "", "no such file or directory");
  if (!fs::is_directory(path, ec)) return hash_file(path.string());
  if (fs::exists(path / kConfigFile, ec)) {
    if (!recompute)
      if (auto prov = Provenance::load(path); prov && !prov->output_hash.empty()) return prov->output_hash;
    return content_hash(Checkpoint::open(path));
  }
  return hash_directory(path);
}

const char* step_state_name(StepState s) {
  switch (s) {
    case StepState::Cached: return "cached";
    case StepState::Ran: return "ran";
    case StepState::WillRun: return "will run";
    case StepState::NotSelected: return "not selected";
  }
  return "?";
}

std::vector<std::string> StepCall::command_line() const {
  std::vector<std::string> line;
  size_t start = 0, space;
  while ((space = type->command.find(' ', start)) != std::string::npos) {  // "eval suite" -> "eval", "suite"
    line.push_back(type->command.substr(start, space - start));
    start = space + 1;
  }
  line.push_back(type->command.substr(start));
  for (const auto& a : args) {
    if (a.values.empty()) line.push_back("--" + a.key);
    for (const auto& v : a.values) line.push_back("--" + a.key + "=" + v);
  }
  line.push_back("--out=" + out.string());
  return line;
}

Json StepEvent::to_json() const {
  return {{"step", id},        {"command", command},         {"state", step_state_name(state)},
          {"reason", reason},  {"out", out.string()},        {"cache_key", cache_key},
          {"output_hash", output_hash}, {"seconds", seconds}, {"command_line", command_line}};
}

namespace {

class Runner {
 public:
  Runner(const Recipe& r, const RunOptions& o, const StepExecutor& ex,
         const std::function<void(const StepEvent&, bool)>& on_event)
      : r_(r), o_(o), execute_(ex), on_event_(on_event), version_(o.emo_version.empty() ? emo_version() : o.emo_version) {}
  RunReport run();

 private:
  struct Done {
    fs::path dir, out;
    std::string output_hash;  // "" while unknown (dry run: the step will run)
  };
  const StepTypeSpec& type_of(const RecipeStep& s) const { return *find_step_type(r_.catalogue, s.command); }
  std::string input_hash(const RecipeInput& in);
  std::string hash_of(const fs::path& path);
  static std::string step_of(const Reference& ref) { return ref.name.substr(0, ref.name.rfind('.')); }
  std::string resolve(const std::string& text) const;
  std::optional<std::string> key_token(const std::string& text, const FieldSpec& spec);
  std::optional<std::string> cache_key(const RecipeStep& s) { return cache_key(s, version_); }
  std::optional<std::string> cache_key(const RecipeStep& s, const std::string& version);
  StepCall call_for(const RecipeStep& s, const Done& d) const;
  std::set<std::string> selected_steps() const;
  std::set<std::string> needed_by(const std::set<std::string>& steps) const;
  void finish_provenance(const RecipeStep& s, const StepCall& call, const std::string& key, Done& d);
  void log(const StepEvent& e);

  const Recipe& r_;
  const RunOptions& o_;
  const StepExecutor& execute_;
  const std::function<void(const StepEvent&, bool)>& on_event_;
  const std::string version_;  // what new cache keys name
  std::map<std::string, std::string> input_hashes_;
  std::map<fs::path, std::string> path_hashes_;  // what a run read or wrote, hashed once
  std::map<std::string, Done> done_;
};

std::string Runner::input_hash(const RecipeInput& in) {
  auto it = input_hashes_.find(in.name);
  if (it != input_hashes_.end()) return it->second;
  std::string h = hash_of(in.resolved);
  if (!in.pinned_hash.empty() && h != in.pinned_hash)
    fail(in.pos.where(), "inputs." + in.name + ".hash", "pinned ", in.pinned_hash, " but ", in.resolved.string(),
         " has ", h);
  return input_hashes_[in.name] = h;
}

// A path's hash, read once per run: the cache key and the runner-written provenance both
// need the hashes of the files a step reads, and a step's output is hashed again when a
// later step reads it. Nothing a run has hashed changes while it runs (each step writes
// only its own, new directory).
std::string Runner::hash_of(const fs::path& path) {
  auto it = path_hashes_.find(path);
  if (it != path_hashes_.end()) return it->second;
  return path_hashes_[path] = hash_path(path);
}

// The text with references replaced by the paths they stand for.
std::string Runner::resolve(const std::string& text) const {
  return replace_references(text, [&](const Reference& ref) -> std::optional<std::string> {
    if (ref.kind == "inputs") return r_.input(ref.name)->resolved.string();
    if (ref.kind == "steps") return done_.at(step_of(ref)).out.string();
    return o_.workdir.string();
  });
}

// What a setting value contributes to the cache key: references become the hashes of
// what they point at (so moving the workdir or an input keeps the key), and a literal
// path is hashed too. nullopt when it depends on a step whose output is not known yet.
std::optional<std::string> Runner::key_token(const std::string& text, const FieldSpec& spec) {
  if (find_references(text).empty()) {
    if (!spec.input_path) return text;
    auto [name, path] = split_path_name(spec, text);  // a task's name stays in the key
    return name + hash_of(path);
  }
  bool unknown = false;
  std::string out = replace_references(text, [&](const Reference& ref) -> std::optional<std::string> {
    if (ref.kind == "inputs") return input_hash(*r_.input(ref.name));
    if (ref.kind == "steps") {
      const std::string& h = done_.at(step_of(ref)).output_hash;
      unknown = unknown || h.empty();
      return h;
    }
    return std::string("${workdir}");
  });
  if (unknown) return std::nullopt;
  return out;
}

// The key names the emo version that makes (or made) the output: a run records its own, and
// an output is checked against the key of the version that made it (see run()).
std::optional<std::string> Runner::cache_key(const RecipeStep& s, const std::string& version) {
  const StepTypeSpec& type = type_of(s);
  Json settings = Json::object();
  for (const auto& v : s.with) {
    const FieldSpec* spec = type.find(v.key);
    Json items = Json::array();
    for (const auto& item : v.items) {
      auto t = key_token(item, *spec);
      if (!t) return std::nullopt;
      items.push_back(*t);
    }
    settings[v.key] = v.is_list ? items : items[0];
  }
  Json key = {{"emo_cache_key", kCacheKeyVersion}, {"command", s.command}, {"settings", settings},
              {"emo_version", version}};
  return "sha256:" + sha256_hex(key.dump());
}

StepCall Runner::call_for(const RecipeStep& s, const Done& d) const {
  StepCall call;
  call.step = &s;
  call.type = &type_of(s);
  call.out = d.out;
  for (const auto& v : s.with) {
    if (v.is_bool && call.type->find(v.key)->kind == FieldSpec::Kind::Bool) {
      if (v.bool_value) call.args.push_back({v.key, {}});
      continue;
    }
    FieldValue a{v.key, {}};
    for (const auto& item : v.items) a.values.push_back(resolve(item));
    call.args.push_back(std::move(a));
  }
  return call;
}

std::set<std::string> Runner::selected_steps() const {
  std::set<std::string> sel;
  bool on = o_.from.empty();
  for (const auto& s : r_.steps) {
    if (!o_.from.empty() && s.id == o_.from) on = true;
    if (!o_.only.empty() ? s.id == o_.only : on) sel.insert(s.id);
  }
  return sel;
}

std::set<std::string> Runner::needed_by(const std::set<std::string>& steps) const {
  std::set<std::string> need = steps;
  for (auto it = r_.steps.rbegin(); it != r_.steps.rend(); ++it)  // dependencies come earlier
    if (need.count(it->id))
      for (const auto& d : it->depends_on) need.insert(d);
  return need;
}

// The command wrote provenance for a checkpoint; anything else gets one from the runner.
// Either way it names the recipe, the step and the cache key.
void Runner::finish_provenance(const RecipeStep& s, const StepCall& call, const std::string& key, Done& d) {
  const StepTypeSpec& type = type_of(s);
  std::optional<Provenance> own = type.out_file.empty() ? Provenance::load(d.dir) : std::nullopt;
  Provenance prov = own ? *own : Provenance(s.command);
  if (!own) {
    prov.argv = {"emo"};
    for (const auto& w : call.command_line()) prov.argv.push_back(w);
    for (const auto& a : call.args) {
      const FieldSpec* spec = type.find(a.key);
      prov.settings[a.key] = a.values.empty() ? YAML::Node(true)
                                              : (a.values.size() == 1 && spec->kind != FieldSpec::Kind::List
                                                     ? YAML::Node(a.values[0])
                                                     : YAML::Node(a.values));
      if (!spec->input_path) continue;
      for (const auto& value : a.values) {
        const std::string path = split_path_name(*spec, value).second;  // a task's name is not part of the path
        std::string h = hash_of(path);
        prov.add_input(a.key, path, h);
        auto parent = provenance_of(path);
        prov.parents[h] = parent ? parent->to_yaml() : YAML::Node(YAML::NodeType::Null);
      }
    }
    prov.output_hash = hash_path(d.out);
    if (!type.out_file.empty()) prov.extra["output_file"] = type.out_file;
    prov.finished = now_iso8601();
  }
  YAML::Node rec;
  rec["name"] = r_.name;
  rec["file"] = fs::absolute(r_.file).lexically_normal().string();
  rec["file_hash"] = r_.file_hash;
  rec["step"] = s.id;
  rec["cache_key"] = key;
  prov.extra["recipe"] = rec;
  prov.write(d.dir);
  d.output_hash = prov.output_hash;
}

void Runner::log(const StepEvent& e) {
  if (o_.dry_run) return;
  Json j = e.to_json();
  j["recipe"] = r_.name;
  j["time"] = now_iso8601();
  MetricsLog((o_.workdir / kRunLog).string()).write(j);
}

RunReport Runner::run() {
  if (!o_.from.empty() && !r_.step(o_.from)) fail("--from", o_.from, "the recipe has no such step");
  if (!o_.only.empty() && !r_.step(o_.only)) fail("--only", o_.only, "the recipe has no such step");
  if (!o_.dry_run) fs::create_directories(o_.workdir);
  std::set<std::string> selected = selected_steps();
  std::set<std::string> needed = needed_by(selected);
  bool forced_from = !o_.from.empty();
  RunReport report;
  for (const auto& s : r_.steps) {
    const StepTypeSpec& type = type_of(s);
    Done d;
    d.dir = o_.workdir / s.id;
    d.out = type.out_file.empty() ? d.dir : d.dir / type.out_file;
    StepEvent e;
    e.id = s.id;
    e.command = s.command;
    e.out = d.out;
    auto key = cache_key(s);
    e.cache_key = key.value_or("");
    std::optional<Provenance> prov = Provenance::load(d.dir);
    std::error_code ec;
    // Same settings and inputs as the output was made with, by the emo version it records:
    // reused, whatever version runs now. A rebuild must not throw away (and delete) an
    // hour of pretraining; --force or --from re-run a step on purpose.
    std::optional<std::string> made_key = !prov                            ? std::nullopt
                                          : prov->emo_version == version_ ? key
                                                                          : cache_key(s, prov->emo_version);
    bool cached = made_key && prov->extra["recipe"] && scalar_text(prov->extra["recipe"], "cache_key") == *made_key &&
                  fs::exists(d.out, ec);
    const bool other_version = cached && prov->emo_version != version_;
    if (cached) e.cache_key = *made_key;
    bool run_it = selected.count(s.id) && (!cached || o_.force || forced_from);
    if (!selected.count(s.id) && !cached) {
      if (!needed.count(s.id)) {
        e.state = StepState::NotSelected;
        report.steps.push_back(e);
        done_[s.id] = d;
        continue;
      }
      fail(o_.only.empty() ? "--from " + o_.from : "--only " + o_.only, "",
           "step \"", s.id, "\" has no cached output with its current settings; run it first");
    }
    e.reason = !run_it ? (other_version ? "made by emo " + prov->emo_version : "cached")
               : o_.force ? "--force"
               : (forced_from && cached) ? "--from " + o_.from
               : !key ? "an input is made by a step that runs first"
               : !prov ? "no output yet"
               : "settings or inputs changed";
    StepCall call = call_for(s, d);
    e.command_line = call.command_line();
    if (!run_it) {
      e.state = StepState::Cached;
      d.output_hash = prov->output_hash;
      e.output_hash = d.output_hash;
    } else if (o_.dry_run) {
      e.state = StepState::WillRun;
    } else {
      if (on_event_) on_event_(e, true);
      remove_output_dir(d.dir);
      fs::create_directories(type.out_file.empty() ? o_.workdir : d.dir);
      auto t0 = std::chrono::steady_clock::now();
      execute_(call);
      e.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (!key) key = cache_key(s);  // its inputs exist now
      e.cache_key = *key;
      finish_provenance(s, call, *key, d);
      e.state = StepState::Ran;
      e.output_hash = d.output_hash;
    }
    done_[s.id] = d;
    log(e);
    if (on_event_) on_event_(e, false);
    report.steps.push_back(e);
  }
  for (const auto& out : r_.outputs) {
    RunReport::Output o;
    o.name = out.name;
    o.path = resolve(out.ref);
    // --only or --from an earlier step: a later step's output does not exist yet.
    if (!o_.dry_run && !fs::exists(o.path)) continue;
    if (!out.show.empty()) o.show = (o.path / out.show).string();
    report.outputs.push_back(o);
  }
  return report;
}

}  // namespace

RunReport run_recipe(const Recipe& recipe, const RunOptions& options, const StepExecutor& execute,
                     const std::function<void(const StepEvent&, bool)>& on_event) {
  return Runner(recipe, options, execute, on_event).run();
}

}  // namespace emo
