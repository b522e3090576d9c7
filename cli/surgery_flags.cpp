#include "cli/surgery_flags.h"

#include <algorithm>
#include <cmath>

#include "core/util/error.h"
#include "core/util/log.h"
#include "core/util/progress.h"
#include "core/util/registry.h"
#include "surgery/request_fields.h"

namespace emo::cli {

void ExampleFlags::add(CLI::App* cmd, bool several_tasks) {
  const auto& rows = example_fields();
  if (several_tasks)
    cmd->add_option("--data", tasks,
                    "Task examples: JSONL(.gz) of texts, GSM8K {question, answer}, or the corpus; repeat as NAME=FILE "
                    "for several tasks in one module");
  else
    add_field_option(cmd, field_spec(rows, "data"), source.path);
  add_field_option(cmd, field_spec(rows, "text-field"), source.text_field);
  add_field_option(cmd, field_spec(rows, "domain"), source.domain);
  add_field_option(cmd, field_spec(rows, "format"), source.format);
  add_field_option(cmd, field_spec(rows, "shots"), source.shots);
  add_field_option(cmd, field_spec(rows, "limit"), source.limit);
  add_field_option(cmd, field_spec(rows, "skip"), source.skip);
  add_field_option(cmd, field_spec(rows, "batch"), batch);
  add_field_option(cmd, field_spec(rows, "max-length"), max_length);
}

std::pair<std::string, std::string> split_named(const std::string& text) {
  const size_t eq = text.find('=');
  if (eq == std::string::npos) return {"", text};
  return {text.substr(0, eq), text.substr(eq + 1)};
}

CLI::Validator parsed_by(const std::function<void(const std::string&)>& parse, const std::string& name) {
  auto check = checked_by(parse);
  return CLI::Validator([check](std::string& text) { return check(text); }, name);
}

std::pair<std::string, double> parse_weight(const std::string& text) {
  auto [name, value] = split_named(text);
  size_t used = 0;
  double weight = 0;
  try {
    weight = std::stod(value, &used);
  } catch (const std::exception&) {
  }
  if (name.empty() || used != value.size() || !(weight > 0) || !std::isfinite(weight))
    fail("--weight", text, "expected NAME=W with W a positive number");
  return {name, weight};
}

bool any_named(const std::vector<std::string>& values) {
  return std::any_of(values.begin(), values.end(), [](const std::string& v) { return !split_named(v).first.empty(); });
}

void TaskFlags::add(CLI::App* cmd) {
  cmd->add_option("--weight", weights, "NAME=W: a task's weight when several are composed (default 1)")
      ->check(parsed_by([](const std::string& text) { parse_weight(text); }, "NAME=W"));
  cmd->add_option("--compose", compose, entries_help("How several tasks make one module:", compose_rules()))
      ->check(CLI::IsMember(entry_names(compose_rules())));
  cmd->add_option("--and-not", and_not, "NAME: leave out the experts this task's own module keeps (switch it off)");
}

void BudgetFlags::add(CLI::App* cmd) {
  std::vector<FieldSpec> specs;
  for (const auto& f : budget_fields()) specs.push_back(f.spec);
  flags = std::make_shared<RequestFlags>(cmd, specs);
}

BudgetRequest BudgetFlags::request() const {
  BudgetRequest r;
  if (flags) apply_fields(budget_fields(), flags->given(), r);
  return r;
}

RoutedExamples read_examples(const ExampleFlags& flags, const LoadedModel& m) {
  return read_routed_examples(flags.request(), *m.model, *m.tokenizer);
}

RouteStats collect_with_progress(LoadedModel& m, const std::string& model_hash, const RoutedExamples& ex,
                                 const ExampleFlags& flags, const RoutingControl* routing) {
  Progress bar("route", uint64_t(ex.tokens.tokens), "tokens");
  CollectOptions co;
  co.batch = flags.batch;
  co.routing = routing;
  co.progress = [&](int64_t done, int64_t) { bar.update(uint64_t(done)); };
  RouteStats s = route_example_request(*m.model, model_hash, ex, flags.request(), co);
  bar.finish();
  return s;
}

std::string methods_help() {
  std::string out = "selection methods:\n";
  for (const auto& m : selection_methods())
    out += "  " + m->name() + std::string(18 - std::min<size_t>(17, m->name().size()), ' ') + m->description() + "\n" +
           std::string(20, ' ') + "(" + m->reference() + ")\n";
  return out;
}

}  // namespace emo::cli
