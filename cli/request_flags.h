// A request's fields (core/util/fields.h) as a command's flags, and commands whose recipe
// steps build that request directly.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/util/fields.h"
#include "core/util/progress.h"
#include "recipes/recipe.h"
#include "recipes/runner.h"

namespace emo::cli {

// "Writes OUT/config.json, ... and README.md." from a footer whose text runs over lines
// and ends with an example.
std::string first_sentence(const std::string& footer);

// What a request step records as its command line: `emo` and the step's settings as flags.
std::vector<std::string> step_command_line(const StepCall& call);
// What this process was run as (provenance's command line for a command).
const std::vector<std::string>& command_line();

// Requests whose entry point records its command line (in provenance) have a command_line.
template <class R, class = void>
struct records_command_line : std::false_type {};
template <class R>
struct records_command_line<R, std::void_t<decltype(std::declval<R&>().command_line)>> : std::true_type {};

// One flag per field: typed, required, limited to its choices and checked as the field says.
// given() is what the user wrote, for build_request.
class RequestFlags {
 public:
  RequestFlags(CLI::App* cmd, const std::vector<FieldSpec>& specs);
  FieldValues given() const;

 private:
  struct Slot {
    FieldSpec spec;
    std::string text;
    std::vector<std::string> list;
    bool on = false;
    CLI::Option* option = nullptr;
  };
  std::vector<std::unique_ptr<Slot>> slots_;
};

// The checks a field row asks of its flag: its choices, its own check, required.
void apply_field_checks(CLI::Option* option, const FieldSpec& spec);

// A flag bound to a variable, described by a field row: for commands that keep their own
// option structs (emo route, select) while their help comes from the shared rows.
template <class T>
CLI::Option* add_field_option(CLI::App* cmd, const FieldSpec& spec, T& value) {
  CLI::Option* o = cmd->add_option("--" + spec.key, value, spec.help);
  apply_field_checks(o, spec);
  return o;
}

// A command whose work is one entry point: flags (the spec's fields, and --json) -> request
// -> run(request) -> print(request, result, json). Its recipe step calls the same `run`
// (request_step below).
template <class R, class Result>
CLI::App* add_request_command(CLI::App& app, const RequestSpec<R>& spec, std::function<Result(const R&)> run,
                              std::function<void(const R&, const Result&, bool json)> print,
                              const std::string& json_help = "Print the result as JSON") {
  // "eval pareto" is the subcommand pareto of `app` (emo eval).
  CLI::App* cmd = app.add_subcommand(spec.command.substr(spec.command.rfind(' ') + 1), spec.summary);
  auto flags = std::make_shared<RequestFlags>(cmd, spec.specs());
  auto json = std::make_shared<bool>(false);
  if (!json_help.empty()) cmd->add_flag("--json", *json, json_help);  // "": the command prints one way, or has --format
  cmd->footer(spec.footer);
  cmd->callback([&spec, flags, json, run, print] {
    R request = build_request(spec, flags->given());
    if constexpr (records_command_line<R>::value) request.command_line = command_line();
    print(request, run(request), *json);
  });
  return cmd;
}

// Progress of an entry point that reports (done, total) per stage: one bar per stage, made
// on its first report (when the total is known), all finished by finish().
class StageBars {
 public:
  void update(const std::string& stage, uint64_t done, uint64_t total, const char* unit);
  void finish();

 private:
  std::vector<std::pair<std::string, std::unique_ptr<Progress>>> bars_;
};

// A recipe step type made from a RequestSpec: its settings are the fields a recipe may set.
template <class R>
StepTypeSpec request_step_type(const RequestSpec<R>& spec) {
  StepTypeSpec t;
  t.command = spec.command;
  t.summary = spec.summary;
  t.writes = first_sentence(spec.footer);
  for (const auto& f : spec.fields)
    if (f.spec.recipe_setting) t.settings.push_back(f.spec);
  return t;
}

// Commands whose recipe steps run their library entry point with a request built from the
// step's settings (the others parse the step's command line; cli/recipe_steps.cpp).
struct RequestStep {
  StepTypeSpec type;
  StepExecutor run;
};
std::vector<RequestStep>& request_steps();
struct RequestStepRegistration {
  explicit RequestStepRegistration(RequestStep step);
};


// A recipe step that builds the request from the step's settings (OUT is the step's
// directory) and runs it: no argv, no second parser.
template <class R>
RequestStep request_step(const RequestSpec<R>& spec, std::function<void(const R&)> run) {
  return {request_step_type(spec), [&spec, run](const StepCall& call) {
            R request = build_request(spec, call.args);
            request.out = call.out;
            if constexpr (records_command_line<R>::value) request.command_line = step_command_line(call);
            run(request);
          }};
}

}  // namespace emo::cli
