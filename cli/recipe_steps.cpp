#include "cli/recipe_steps.h"

#include <stdexcept>

#include "cli/request_flags.h"

namespace emo::cli {

namespace {

// The commands a step may run, in the order the reference lists them, and where their --out
// points inside the step's directory ("" = the directory itself). Each registers its
// request step beside its command (cli/cmd_*.cpp: request_step).
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

const RequestStep& request_step(const std::string& command) {
  for (const auto& r : request_steps())
    if (r.type.command == command) return r;
  throw std::logic_error("no request step registered for " + command);
}

}  // namespace

StepCatalogue step_catalogue() {
  StepCatalogue catalogue;
  for (const auto& sc : kStepCommands) {
    catalogue.push_back(request_step(sc.command).type);
    catalogue.back().out_file = sc.out_file;
  }
  return catalogue;
}

void run_step_in_process(const StepCall& call) { request_step(call.type->command).run(call); }

}  // namespace emo::cli
