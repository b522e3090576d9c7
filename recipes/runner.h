// Running a recipe: each step in dependency order, into WORKDIR/<step id>, skipping a
// step whose cache key - command, resolved settings, the hashes of everything it reads,
// emo version - matches the key recorded in its output's provenance.yaml. Each step's
// provenance names the recipe, the step and the key; parents' provenance is embedded,
// so `emo lineage` can follow any output back to its roots.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/io/json.h"
#include "recipes/recipe.h"

namespace emo {

// One step as the command sees it: flags and values, references resolved to paths.
struct StepCall {
  const RecipeStep* step = nullptr;
  const StepTypeSpec* type = nullptr;
  fs::path out;  // what --out gets
  FieldValues args;  // a flag that is on has no values
  std::vector<std::string> command_line() const;  // {"extract", "--model", "...", ...}
};
// Runs one step in this process (the CLI gives the command's own code); throws on failure.
using StepExecutor = std::function<void(const StepCall&)>;

struct RunOptions {
  fs::path workdir;
  bool dry_run = false;
  bool force = false;  // run every selected step even if cached
  std::string from;    // run this step and every step after it, using earlier steps' cached outputs
  std::string only;    // run just this step (its inputs must be cached)
  // The version the new cache keys name ("": this emo's); tests pretend to be a later one.
  std::string emo_version;
};

enum class StepState { Cached, Ran, WillRun, NotSelected };
const char* step_state_name(StepState s);

struct StepEvent {
  std::string id, command;
  StepState state = StepState::WillRun;
  std::string reason;  // why it runs; "cached", or "made by emo V" for an output of another version reused
  fs::path out;
  std::string cache_key, output_hash;  // empty when not known yet (dry run after a step that will run)
  double seconds = 0;
  std::vector<std::string> command_line;
  Json to_json() const;
};

struct RunReport {
  std::vector<StepEvent> steps;
  struct Output {
    std::string name;
    fs::path path;
    std::string show;  // the file to print, resolved ("" for none)
  };
  std::vector<Output> outputs;
};

// on_event(e, starting): called before a step runs (starting = true) and once its state
// is final. Writes WORKDIR/run.jsonl (one line per step) unless dry_run.
RunReport run_recipe(const Recipe& recipe, const RunOptions& options, const StepExecutor& execute,
                     const std::function<void(const StepEvent&, bool starting)>& on_event = {});

// The hash that identifies what a path holds: a checkpoint's content hash (from its
// provenance when it has one, else computed), a file's SHA-256, or for any other
// directory the SHA-256 of its files' names and hashes (provenance.yaml excluded).
std::string hash_path(const fs::path& path, bool recompute = false);

}  // namespace emo
