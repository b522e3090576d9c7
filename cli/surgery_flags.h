// Flags shared by route, select and extract: where the task examples come from, the
// budget, the method, and the steps that turn them into statistics and a selection.
#pragma once

#include "cli/common.h"
#include "cli/request_flags.h"
#include "surgery/module.h"

namespace emo::cli {

// Their flags' rows are surgery/request_fields.h's, shared with emo extract's request.
struct ExampleFlags {
  ExampleSource source;
  std::vector<std::string> tasks;  // with several_tasks: --data as given, NAME=FILE or FILE
  int64_t batch = 8;
  int64_t max_length = 0;  // 0: the model's context
  // several_tasks: --data may repeat as NAME=FILE (emo select composes them); the caller
  // puts one plain FILE into source.path.
  void add(CLI::App* cmd, bool several_tasks = false);
  ExampleRequest request() const { return {source, batch, max_length}; }
};

// NAME=VALUE as given to --data, --stats and --weight ("" name where there is no '=').
std::pair<std::string, std::string> split_named(const std::string& text);
bool any_named(const std::vector<std::string>& values);
// --weight NAME=W: emo::Error unless W is a positive number.
std::pair<std::string, double> parse_weight(const std::string& text);
// A flag check from a parser that throws emo::Error: the value is refused with its message,
// by CLI11 and by recipes before any step runs.
CLI::Validator parsed_by(const std::function<void(const std::string&)>& parse, const std::string& name);

// Several tasks for `emo select`: --data/--stats NAME=FILE, --weight NAME=W, --and-not NAME.
struct TaskFlags {
  std::vector<std::string> stats, weights, and_not;
  std::string compose = "joint";
  void add(CLI::App* cmd);
};

struct BudgetFlags {
  std::shared_ptr<RequestFlags> flags;
  void add(CLI::App* cmd);
  BudgetRequest request() const;
};

// The examples, tokenized for `m` (truncated to the context with a warning).
RoutedExamples read_examples(const ExampleFlags& flags, const LoadedModel& m);

// Collects statistics with a progress bar.
RouteStats collect_with_progress(LoadedModel& m, const std::string& model_hash, const RoutedExamples& ex,
                                 const ExampleFlags& flags, const RoutingControl* routing);

// `--method help`: the registered methods, one per line.
std::string methods_help();

}  // namespace emo::cli
