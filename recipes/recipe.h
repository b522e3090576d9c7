// A recipe: a YAML file naming inputs (checkpoints, data files) and steps, each step one
// emo command with its flags as `with:` settings. Loading validates the whole file
// before anything runs - unknown keys, wrong types, unknown commands or settings,
// dangling references, cycles, missing files - and every error names the file, line
// and column ("recipes/x.yaml:12:7: steps[2].with.keep: expected an integer").
//
//   name: quickstart
//   description: ...
//   inputs:
//     base: ${emo.data}/models/emo-tiny          # or {path: ..., hash: sha256:...}
//   steps:
//     - id: module
//       command: extract
//       with: {model: "${inputs.base}", keep: 4}
//   outputs:
//     module: ${steps.module.out}                 # or {from: ..., show: FILE}
#pragma once

#include <yaml-cpp/yaml.h>

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/util/fields.h"
#include "core/util/fs.h"

namespace emo {

// A named path's NAME= prefix ("" where the value has none, or the setting takes no names)
// and the path after it.
std::pair<std::string, std::string> split_path_name(const FieldSpec& spec, const std::string& value);

// What a step's command accepts, as data: the fields of the command's request
// (core/util/fields.h), or for a command without one its long flags. The CLI builds it from
// its own definitions, so recipes and commands cannot disagree.
struct StepTypeSpec {
  std::string command;   // "extract", "eval suite"
  std::string summary;
  std::string writes;    // what the command writes (its --help footer's first sentence)
  std::string out_file;  // "": the command's --out is the step's directory; else a file in it
  std::vector<FieldSpec> settings;
  const FieldSpec* find(const std::string& key) const;
};
using StepCatalogue = std::vector<StepTypeSpec>;
const StepTypeSpec* find_step_type(const StepCatalogue& catalogue, const std::string& command);

// Where something was written: "file:line:col" (or "--set key" for an override).
struct SourcePos {
  std::string file;
  int line = 0, column = 0;  // 1-based; 0 when not from the file
  std::string where() const;
};

struct RecipeInput {
  std::string name;
  std::string path;         // as written, ${...} expanded
  fs::path resolved;        // absolute
  std::string pinned_hash;  // optional "sha256:..."
  SourcePos pos;
};

// A value of `with:`: a scalar or a list of scalars, each string possibly holding
// references ${inputs.X}, ${steps.Y.out}, ${emo.data}, ${workdir}.
struct SettingValue {
  std::string key;
  std::vector<std::string> items;  // one for a scalar
  bool is_list = false;
  bool is_bool = false, bool_value = false;
  SourcePos pos;      // the value
  SourcePos key_pos;  // its key
};

struct RecipeStep {
  std::string id;
  std::string command;
  std::vector<SettingValue> with;
  std::vector<std::string> depends_on;  // step ids referenced by its settings
  SourcePos pos;
  const SettingValue* setting(const std::string& key) const;
};

struct RecipeOutput {
  std::string name;
  std::string ref;   // "${steps.X.out}" or "${inputs.X}"
  std::string show;  // a file inside the output to print at the end ("" for none)
  SourcePos pos;
};

struct Recipe {
  fs::path file;
  std::string file_hash;  // sha256 of the recipe's bytes
  std::string name, description;
  std::vector<RecipeInput> inputs;
  std::vector<RecipeStep> steps;  // in an order where every step follows its dependencies
  std::vector<RecipeOutput> outputs;
  StepCatalogue catalogue;  // what its commands accept
  const RecipeStep* step(const std::string& id) const;
  const RecipeInput* input(const std::string& name) const;
};

struct RecipeLoadOptions {
  std::map<std::string, std::string> variables;  // "emo.data" -> path; ${workdir} is left for the runner
  std::vector<std::pair<std::string, std::string>> overrides;  // --set step.key=value
  std::map<std::string, std::string> input_paths;              // --input name=path (relative to the cwd)
};

// Parses and validates; emo::Error ("file:line:col: field: what") on the first problem.
Recipe load_recipe(const fs::path& file, const StepCatalogue& catalogue, const RecipeLoadOptions& options);

// A reference found in a string: ${inputs.X} -> {"inputs", "X"}, ${steps.Y.out} -> {"steps", "Y"}.
struct Reference {
  std::string kind, name;
  size_t begin = 0, end = 0;  // the ${...} span in the string
};
std::vector<Reference> find_references(const std::string& text);
// The text with each reference replaced by value(ref); nullopt leaves it as written.
std::string replace_references(const std::string& text,
                               const std::function<std::optional<std::string>(const Reference&)>& value);

}  // namespace emo
