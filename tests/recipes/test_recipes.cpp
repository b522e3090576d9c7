// The recipe loader's validation (every error class, with file:line:col) and the
// runner's caching, provenance, lineage and verification, on a small catalogue of
// made-up commands whose executor writes text files: fast, and exact about which
// steps ran.
#include <catch2/catch.hpp>

#include <fstream>
#include <map>

#include "core/checkpoint/provenance.h"
#include "core/util/error.h"
#include "core/util/version.h"
#include "recipes/lineage.h"
#include "recipes/reference.h"
#include "recipes/runner.h"
#include "test_util.h"

using namespace emo;
using emo::test::TempDir;

namespace {

StepCatalogue toy_catalogue() {
  using K = FieldSpec::Kind;
  StepTypeSpec make{"make", "Write a value", "Writes value.txt.", "", {}};
  make.settings = {field("seed", K::Int, "the value").must(), field("scale", K::Float, "a factor"),
                   field("mode", K::String, "a or b").one_of({"a", "b"}), field("loud", K::Bool, "a flag"),
                   field("quiet", K::Bool, "the other flag").excludes({"loud"}),
                   field("data", K::String, "a file it reads").reads()};
  StepTypeSpec combine{"combine", "Join outputs", "Writes result.txt.", "result.txt", {}};
  combine.settings = {field("parts", K::List, "the outputs to join").must().reads(), field("sep", K::String, "separator")};
  return {make, combine};
}

void write(const fs::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::binary);
  f << text;
}

std::string read(const fs::path& p) { return read_text_file(p); }

// Runs a step by writing files, and counts which steps ran.
struct ToyExecutor {
  std::vector<std::string> ran;
  void operator()(const StepCall& call) {
    ran.push_back(call.step->id);
    std::string text = call.type->command + ":";
    for (const auto& a : call.args) {
      text += " " + a.key + "=";
      for (const auto& v : a.values)
        text += fs::is_directory(v) ? read(fs::path(v) / "value.txt") : fs::is_regular_file(v) ? read(v) : v;
    }
    if (call.type->out_file.empty()) {
      fs::create_directories(call.out);
      write(call.out / "value.txt", text);
    } else {
      write(call.out, text);
    }
  }
};

const char* kToyRecipe = R"(name: toy
description: two values and their join
inputs:
  notes: notes.txt
steps:
  - id: one
    command: make
    with: {seed: 1, data: "${inputs.notes}"}
  - id: two
    command: make
    with:
      seed: 2
      mode: b
  - id: join
    command: combine
    with:
      parts: ["${steps.one.out}", "${steps.two.out}"]
      sep: "+"
outputs:
  joined: {from: "${steps.join.out}"}
)";

struct ToyProject {
  TempDir tmp;
  fs::path recipe = tmp / "toy.yaml";
  ToyProject(const std::string& text = kToyRecipe) {
    write(tmp / "notes.txt", "hello");
    write(recipe, text);
  }
  Recipe load(std::vector<std::pair<std::string, std::string>> sets = {}) {
    RecipeLoadOptions o;
    o.overrides = std::move(sets);
    return load_recipe(recipe, toy_catalogue(), o);
  }
  RunReport run(const Recipe& r, ToyExecutor& ex, RunOptions o = {}) {
    o.workdir = tmp / "work";
    return run_recipe(r, o, [&](const StepCall& c) { ex(c); });
  }
};

RunOptions dry_run() {
  RunOptions o;
  o.dry_run = true;
  return o;
}
RunOptions forced(const std::string& only = "") {
  RunOptions o;
  o.force = true;
  o.only = only;
  return o;
}
RunOptions from_step(const std::string& id) {
  RunOptions o;
  o.from = id;
  return o;
}
RunOptions only_step(const std::string& id) {
  RunOptions o;
  o.only = id;
  return o;
}

// The message of the error loading `text` raises.
std::string load_error(const std::string& text) {
  ToyProject p(text);
  try {
    p.load();
  } catch (const Error& e) {
    std::string msg = e.what();
    return msg.substr(msg.find("toy.yaml"));
  }
  return "(no error)";
}

std::string with_step(const std::string& step_yaml) {
  return "name: t\ninputs:\n  notes: notes.txt\nsteps:\n" + step_yaml;
}

}  // namespace

TEST_CASE("recipe: a valid recipe loads with its steps in dependency order", "[recipes]") {
  ToyProject p(R"(name: order
steps:
  - id: join
    command: combine
    with: {parts: ["${steps.one.out}"]}
  - id: one
    command: make
    with: {seed: 1}
)");
  Recipe r = p.load();
  REQUIRE(r.steps.size() == 2);
  CHECK(r.steps[0].id == "one");
  CHECK(r.steps[1].id == "join");
  CHECK(r.steps[1].depends_on == std::vector<std::string>{"one"});
  CHECK(r.file_hash.rfind("sha256:", 0) == 0);
}

TEST_CASE("recipe errors: each class names file, line and column", "[recipes][bad-input]") {
  CHECK(load_error("name: t\nstep: []\n") == "toy.yaml:2:1: step: unknown key (expected one of: description, inputs, name, outputs, steps)");
  // The name is the default work directory, out/<name>: it cannot lead elsewhere.
  CHECK(load_error("name: ../../home\nsteps: []\n") ==
        "toy.yaml:1:7: name: \"../../home\": use letters, digits, - and _, starting with a letter");
  CHECK(load_error("name: t\nsteps: [\n") .find("toy.yaml:3:1: not valid YAML") == 0);
  // Found by fuzz_recipe: YAML allows a list as a key; it used to escape as yaml-cpp's
  // "bad conversion" (tests/fuzz/corpus/recipe/regression-complex-key.yaml).
  CHECK(load_error("name: t\n? [a]\n: 1\nsteps: []\n") == "toy.yaml:2:3: expected a name as the key, not a list or mapping");
  CHECK(load_error(with_step("  - id: a\n    command: make\n    with: {seed: abc}\n")) ==
        "toy.yaml:7:18: steps[0] (a).with.seed: expected an integer, got \"abc\"");
  CHECK(load_error(with_step("  - id: a\n    command: make\n    with: {seed: 1, scale: x1}\n")) ==
        "toy.yaml:7:28: steps[0] (a).with.scale: expected a number, got \"x1\"");
  CHECK(load_error(with_step("  - id: a\n    command: make\n    with: {seed: 1, loud: yes}\n")) ==
        "toy.yaml:7:27: steps[0] (a).with.loud: expected true or false, got \"yes\"");
  CHECK(load_error(with_step("  - id: a\n    command: make\n    with: {seed: [1, 2]}\n")) ==
        "toy.yaml:7:18: steps[0] (a).with.seed: expected a single integer, got a list");
  CHECK(load_error(with_step("  - id: a\n    command: make\n    with: {seed: 1, mode: c}\n")) ==
        "toy.yaml:7:27: steps[0] (a).with.mode: \"c\" is not one of: a, b");
  CHECK(load_error(with_step("  - id: a\n    command: bake\n")) ==
        "toy.yaml:6:14: steps[0] (a).command: unknown command \"bake\" (steps can run: make, combine)");
  CHECK(load_error(with_step("  - id: a\n    command: make\n    with: {seed: 1, colour: red}\n")) ==
        "toy.yaml:7:21: steps[0] (a).with.colour: `make` has no setting \"colour\" (`emo run --reference` lists them)");
  CHECK(load_error(with_step("  - id: a\n    command: make\n    with: {mode: a}\n")) ==
        "toy.yaml:5:5: steps[0] (a).with: `make` needs \"seed\" (the value)");
  CHECK(load_error(with_step("  - id: a\n    command: make\n    with: {seed: 1, loud: true, quiet: true}\n")) ==
        "toy.yaml:5:5: steps[0] (a).with: `make` takes \"quiet\" or \"loud\", not both");
  CHECK(load_error(with_step("  - id: a\n    command: make\n    with: {seed: 1, out: x}\n")) ==
        "toy.yaml:7:21: steps[0] (a).with.out: the runner chooses each step's output (WORKDIR/a); refer to it as "
        "${steps.a.out}");
  CHECK(load_error(with_step("  - id: a\n    command: make\n    with: {seed: 1}\n  - id: a\n    command: make\n")) ==
        "toy.yaml:8:9: steps[1].id: \"a\" is used by an earlier step");
  CHECK(load_error(with_step("  - id: a\n    command: make\n    typo: 1\n")) ==
        "toy.yaml:7:5: steps[0].typo: unknown key (expected one of: command, description, id, with)");
  // Dangling references, in settings and in outputs.
  CHECK(load_error(with_step("  - id: a\n    command: combine\n    with: {parts: [\"${steps.b.out}\"]}\n")) ==
        "toy.yaml:7:19: steps[0] (a).with.parts: ${steps.b.out}: the recipe has no step \"b\"");
  CHECK(load_error(with_step("  - id: a\n    command: make\n    with: {seed: 1, data: \"${inputs.nope}\"}\n")) ==
        "toy.yaml:7:27: steps[0] (a).with.data: ${inputs.nope}: the recipe has no input \"nope\"");
  CHECK(load_error(with_step("  - id: a\n    command: make\n    with: {seed: 1}\noutputs:\n  x: ${steps.z.out}\n")) ==
        "toy.yaml:9:6: outputs.x: ${steps.z.out}: the recipe has no step \"z\"");
  // Cycles.
  CHECK(load_error(with_step("  - id: a\n    command: combine\n    with: {parts: [\"${steps.b.out}\"]}\n"
                             "  - id: b\n    command: combine\n    with: {parts: [\"${steps.a.out}\"]}\n")) ==
        "toy.yaml:5:5: steps[0] (a): steps depend on each other in a cycle: a -> b -> a");
  // Missing files: an input, and a literal path a step reads.
  CHECK(load_error("name: t\ninputs:\n  base: missing-model\nsteps:\n  - id: a\n    command: make\n    with: {seed: 1}\n")
            .find("toy.yaml:3:9: inputs.base: no such file or directory: ") == 0);
  CHECK(load_error(with_step("  - id: a\n    command: make\n    with: {seed: 1, data: gone.txt}\n"))
            .find("toy.yaml:7:27: steps[0] (a).with.data: no such file or directory: ") == 0);
  CHECK(load_error("name: t\ninputs:\n  n: {path: notes.txt, hash: md5:1}\nsteps:\n  - id: a\n    command: make\n"
                   "    with: {seed: 1}\n") ==
        "toy.yaml:3:30: inputs.n.hash: expected sha256: and 64 hex digits, got \"md5:1\"");
}

TEST_CASE("recipe --set overrides a step's setting and is validated like the file", "[recipes]") {
  ToyProject p;
  Recipe r = p.load({{"one.seed", "7"}});
  CHECK(r.step("one")->setting("seed")->items == std::vector<std::string>{"7"});
  CHECK_THROWS_WITH(p.load({{"nope.seed", "1"}}), "--set: nope.seed: the recipe has no step \"nope\"");
  CHECK_THROWS_WITH(p.load({{"one.seed", "x"}}), "--set one.seed: steps[0] (one).with.seed: expected an integer, got \"x\"");
}

TEST_CASE("recipe run: a second run reuses every step, one changed setting re-runs that step and its descendants",
          "[recipes]") {
  ToyProject p;
  ToyExecutor ex;
  RunReport first = p.run(p.load(), ex);
  CHECK(ex.ran == std::vector<std::string>{"one", "two", "join"});
  CHECK(read(p.tmp / "work/join/result.txt") == "combine: parts=make: seed=1 data=hellomake: seed=2 mode=b sep=+");
  REQUIRE(first.outputs.size() == 1);
  CHECK(first.outputs[0].path == p.tmp / "work/join/result.txt");

  ex.ran.clear();
  RunReport second = p.run(p.load(), ex);
  CHECK(ex.ran.empty());
  for (const auto& e : second.steps) CHECK(e.state == StepState::Cached);
  for (size_t i = 0; i < 3; ++i) CHECK(second.steps[i].cache_key == first.steps[i].cache_key);

  // Changing `two` re-runs two and join, not one.
  RunReport plan = p.run(p.load({{"two.seed", "3"}}), ex, dry_run());
  CHECK(ex.ran.empty());
  CHECK(plan.steps[0].state == StepState::Cached);
  CHECK(plan.steps[1].state == StepState::WillRun);
  CHECK(plan.steps[2].state == StepState::WillRun);
  CHECK(plan.steps[2].cache_key.empty());  // not known until `two` has run
  p.run(p.load({{"two.seed", "3"}}), ex);
  CHECK(ex.ran == std::vector<std::string>{"two", "join"});

  // Changing a file a step reads re-runs it too; so does --force; --only and --from select.
  write(p.tmp / "notes.txt", "changed");
  ex.ran.clear();
  p.run(p.load({{"two.seed", "3"}}), ex);
  CHECK(ex.ran == std::vector<std::string>{"one", "join"});
  ex.ran.clear();
  p.run(p.load({{"two.seed", "3"}}), ex, forced());
  CHECK(ex.ran == std::vector<std::string>{"one", "two", "join"});
  ex.ran.clear();
  p.run(p.load({{"two.seed", "3"}}), ex, from_step("two"));
  CHECK(ex.ran == std::vector<std::string>{"two", "join"});
  ex.ran.clear();
  p.run(p.load({{"two.seed", "3"}}), ex, forced("join"));
  CHECK(ex.ran == std::vector<std::string>{"join"});
  // --only a step whose inputs are not cached under the current settings: refused.
  CHECK_THROWS_WITH(p.run(p.load({{"two.seed", "4"}}), ex, only_step("join")),
                    "--only join: step \"two\" has no cached output with its current settings; run it first");
}

TEST_CASE("recipe run: an output another emo version made with the same settings is reused, and says so",
          "[recipes]") {
  ToyProject p;
  ToyExecutor ex;
  RunReport first = p.run(p.load(), ex);
  ex.ran.clear();
  RunOptions later;
  later.emo_version = "9.9.9-later";
  RunReport second = p.run(p.load(), ex, later);
  CHECK(ex.ran.empty());
  for (const auto& e : second.steps) {
    CHECK(e.state == StepState::Cached);
    CHECK(e.reason == std::string("made by emo ") + emo_version());
  }
  CHECK(second.steps[2].cache_key == first.steps[2].cache_key);
  // A changed setting still re-runs its step and what reads it.
  RunReport changed = p.run(p.load({{"two.seed", "7"}}), ex, later);
  CHECK(ex.ran == std::vector<std::string>{"two", "join"});
  CHECK(changed.steps[0].reason == std::string("made by emo ") + emo_version());
}

TEST_CASE("recipe run: --only an early step reports no output of a step that has not run", "[recipes]") {
  ToyProject p;
  ToyExecutor ex;
  RunReport first = p.run(p.load(), ex, only_step("one"));
  CHECK(ex.ran == std::vector<std::string>{"one"});
  CHECK(first.outputs.empty());  // `joined` comes from `join`, which has not run
  RunReport all = p.run(p.load(), ex);
  REQUIRE(all.outputs.size() == 1);
  CHECK(fs::exists(all.outputs[0].path));
}

TEST_CASE("recipe run: provenance names the recipe, step and key, and lineage and verify follow it", "[recipes]") {
  ToyProject p;
  ToyExecutor ex;
  RunReport report = p.run(p.load(), ex);
  auto prov = Provenance::load(p.tmp / "work/join");
  REQUIRE(prov);
  CHECK(prov->extra["recipe"]["name"].as<std::string>() == "toy");
  CHECK(prov->extra["recipe"]["step"].as<std::string>() == "join");
  CHECK(prov->extra["recipe"]["cache_key"].as<std::string>() == report.steps[2].cache_key);
  CHECK(prov->extra["output_file"].as<std::string>() == "result.txt");
  CHECK(prov->output_hash == hash_path(p.tmp / "work/join/result.txt"));

  LineageNode root = lineage_of(p.tmp / "work/join/result.txt");
  CHECK(root.command == "combine");
  CHECK(root.recipe_step == "toy/join");
  REQUIRE(root.inputs.size() == 2);
  CHECK(root.inputs[0].command == "make");
  CHECK(root.inputs[0].recipe_step == "toy/one");
  REQUIRE(root.inputs[0].inputs.size() == 1);
  CHECK(root.inputs[0].inputs[0].role == "data");
  CHECK(root.inputs[0].inputs[0].command.empty());  // notes.txt: a root
  CHECK(root.inputs[0].inputs[0].hash == hash_path(p.tmp / "notes.txt"));
  std::string tree = format_lineage(root);
  CHECK(tree.find("combine") == 0);
  CHECK(tree.find("├─ parts: make") != std::string::npos);
  CHECK(tree.find("└─ parts: make") != std::string::npos);
  CHECK(tree.find("│  └─ data: (root)") != std::string::npos);  // under the first parts: input

  CHECK(verify_output(p.tmp / "work/join").ok());
  CHECK(verify_output(p.tmp / "work/one").ok());
  // One flipped byte in either output is found.
  fs::path value = p.tmp / "work/one/value.txt";
  std::string text = read(value);
  text[0] ^= 1;
  write(value, text);
  VerifyResult bad = verify_output(p.tmp / "work/one");
  CHECK_FALSE(bad.ok());
  CHECK(bad.kind == "directory");
  // ... and the runner does not take a changed output for a cached one's input: the key of
  // `join` is computed from the hash recorded when `one` ran, so `one` must be re-run to
  // clear the change, which --from does.
  ex.ran.clear();
  p.run(p.load(), ex, from_step("one"));
  CHECK(ex.ran == std::vector<std::string>{"one", "two", "join"});
  CHECK(verify_output(p.tmp / "work/one").ok());
}

TEST_CASE("recipe reference lists every command and setting", "[recipes]") {
  std::string md = recipe_reference_markdown(toy_catalogue());
  CHECK(md.find(kReferenceBegin) == 0);
  CHECK(md.find("### `combine`") != std::string::npos);
  CHECK(md.find("`${steps.ID.out}` is the file `WORKDIR/ID/result.txt`") != std::string::npos);
  CHECK(md.find("| `mode` | string | a or b One of `a`, `b`. |") != std::string::npos);
  CHECK(md.find("| `seed` | integer | **required.** the value |") != std::string::npos);
}
