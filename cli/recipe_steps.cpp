#include "cli/recipe_steps.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <set>

#include "cli/common.h"
#include "cli/request_flags.h"
#include "core/util/error.h"

namespace emo::cli {

namespace {

// The commands a step may run, in the order the reference lists them, and where their --out
// points inside the step's directory ("" = the directory itself). A command with a typed
// request (request_steps(): all but pretrain, finetune, eval suite and eval sweep) runs it
// directly; the others through a fresh parser of their command line.
struct StepCommand {
  const char* command;
  const char* out_file;
};
constexpr StepCommand kStepCommands[] = {
    {"init", ""},          {"convert", ""},      {"pretrain", ""},       {"route", "stats.safetensors"},
    {"select", "experts.json"}, {"extract", ""}, {"finetune", ""},       {"merge", ""},
    {"eval ppl", "ppl.json"},   {"eval gsm8k", ""}, {"eval mc", ""},     {"eval suite", ""},
    {"eval sweep", ""},    {"eval pareto", ""},   {"analyze usage", ""}, {"analyze clusters", ""},
};

// Flags the runner owns: where the output goes, replacing it, how results print. A step
// writes only into its own directory, so flags naming another file to write (select's
// --report) are not settings either.
const std::set<std::string> kRunnerFlags = {"out", "help", "force", "overwrite", "resume", "json", "report"};

// Flags naming something a step reads: hashed into the cache key and recorded as inputs.
const std::set<std::string> kInputPathFlags = {"model",  "base",   "module", "modules",    "data",  "experts",
                                               "stats",  "corpus", "config", "gsm8k-data", "mc",    "mc-fewshot",
                                               "tokenizer", "ppl-data", "prompts", "fewshot", "baseline", "scratch",
                                               "train-experts"};

// Input flags whose values may carry a name, NAME=PATH: the name is a setting, the path
// an input (emo select's tasks, emo eval pareto's models).
const std::set<std::pair<std::string, std::string>> kNamedPathFlags = {
    {"select", "data"}, {"select", "stats"}, {"eval pareto", "baseline"}, {"eval pareto", "scratch"}};

// While a step runs, what the command prints goes to stderr: `emo run`'s stdout is its
// own report (and valid JSON with --json), the steps' lines are progress.
class StdoutToStderr {
 public:
  StdoutToStderr() {
    std::fflush(stdout);
    saved_ = dup(STDOUT_FILENO);
    if (saved_ >= 0) dup2(STDERR_FILENO, STDOUT_FILENO);
  }
  ~StdoutToStderr() {
    std::fflush(stdout);
    if (saved_ >= 0) {
      dup2(saved_, STDOUT_FILENO);
      close(saved_);
    }
  }
  StdoutToStderr(const StdoutToStderr&) = delete;
  StdoutToStderr& operator=(const StdoutToStderr&) = delete;

 private:
  int saved_ = -1;
};

std::unique_ptr<CLI::App> fresh_app() {
  auto app = std::make_unique<CLI::App>("emo");
  for (const auto& [order, add] : command_registry()) add(*app);
  return app;
}

CLI::App* find_subcommand(CLI::App& app, const std::string& command) {
  CLI::App* at = &app;
  size_t start = 0;
  while (start <= command.size()) {
    size_t space = command.find(' ', start);
    std::string word = command.substr(start, space == std::string::npos ? std::string::npos : space - start);
    at = at->get_subcommand(word);
    if (space == std::string::npos) break;
    start = space + 1;
  }
  return at;
}

FieldSpec::Kind kind_of(const CLI::Option& opt) {
  // A flag expects no value (CLI11 2.1's add_flag sets expected(0), its type size stays 1).
  if (opt.get_expected_max() == 0 || opt.get_type_size() == 0) return FieldSpec::Kind::Bool;
  if (opt.get_expected_max() > 1) return FieldSpec::Kind::List;
  std::string type = opt.get_type_name();
  type = type.substr(0, type.find(':'));
  if (type == "INT" || type == "UINT") return FieldSpec::Kind::Int;
  if (type == "FLOAT") return FieldSpec::Kind::Float;
  return FieldSpec::Kind::String;
}

// CLI11 describes an IsMember check in the type name: "TEXT:{a,b,c}".
std::vector<std::string> choices_of(const CLI::Option& opt) {
  std::string type = opt.get_type_name();
  size_t open = type.find(":{"), close = type.find('}', open == std::string::npos ? 0 : open);
  std::vector<std::string> choices;
  if (open == std::string::npos || close == std::string::npos) return choices;
  std::string body = type.substr(open + 2, close - open - 2);
  size_t start = 0;
  while (start <= body.size()) {
    size_t comma = body.find(',', start);
    choices.push_back(body.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return choices;
}

// The flag's validator (emo's flags have at most one), copied: the app is gone by the time
// a recipe is checked. Empty when the flag has none.
std::function<std::string(const std::string&)> value_check(const CLI::Option& opt) {
  try {
    CLI::Validator v = *const_cast<CLI::Option&>(opt).get_validator();
    return [v](const std::string& value) mutable {
      std::string copy = value;
      return v(copy);
    };
  } catch (const CLI::OptionNotFound&) {
    return {};
  }
}

const RequestStep* request_step(const std::string& command) {
  for (const auto& r : request_steps())
    if (r.type.command == command) return &r;
  return nullptr;
}

}  // namespace

StepCatalogue step_catalogue() {
  auto app = fresh_app();
  StepCatalogue catalogue;
  for (const auto& sc : kStepCommands) {
    if (const RequestStep* r = request_step(sc.command)) {
      catalogue.push_back(r->type);
      catalogue.back().out_file = sc.out_file;
      continue;
    }
    CLI::App* cmd = find_subcommand(*app, sc.command);
    StepTypeSpec t;
    t.command = sc.command;
    t.summary = cmd->get_description();
    t.writes = first_sentence(cmd->get_footer());
    t.out_file = sc.out_file;
    for (const CLI::Option* opt : cmd->get_options()) {
      if (opt->get_lnames().empty()) continue;
      std::string key = opt->get_lnames()[0];
      if (kRunnerFlags.count(key)) continue;
      FieldSpec s;
      s.key = key;
      s.kind = kind_of(*opt);
      s.required = opt->get_required();
      s.input_path = kInputPathFlags.count(key) > 0;
      s.named_path = kNamedPathFlags.count({sc.command, key}) > 0;
      s.choices = choices_of(*opt);
      if (s.choices.empty()) s.check = value_check(*opt);
      s.help = opt->get_description();
      t.settings.push_back(s);
    }
    catalogue.push_back(std::move(t));
  }
  return catalogue;
}

void run_step_in_process(const StepCall& call) {
  if (const RequestStep* r = request_step(call.type->command)) return r->run(call);
  std::vector<std::string> line = call.command_line();
  // The command's provenance records the command line it is equivalent to.
  auto& g = globals();
  std::vector<std::string> saved = g.argv;
  g.argv = {"emo"};
  g.argv.insert(g.argv.end(), line.begin(), line.end());
  auto app = fresh_app();
  std::vector<std::string> reversed(line.rbegin(), line.rend());  // CLI11 consumes the vector from the back
  StdoutToStderr quiet_stdout;
  try {
    app->parse(reversed);
  } catch (const CLI::ParseError& e) {
    g.argv = saved;
    fail("step " + call.step->id, call.type->command, e.what());
  } catch (const ExitStatus& s) {
    g.argv = saved;
    if (s.code != 0) fail("step " + call.step->id, call.type->command, "exited with status ", s.code);
  } catch (...) {
    g.argv = saved;
    throw;
  }
  g.argv = saved;
}

}  // namespace emo::cli
