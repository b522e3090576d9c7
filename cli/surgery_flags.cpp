#include "cli/surgery_flags.h"

#include <algorithm>
#include <cmath>

#include "core/util/error.h"
#include "core/util/log.h"
#include "core/util/progress.h"
#include "core/util/registry.h"

namespace emo::cli {

void ExampleFlags::add(CLI::App* cmd, bool several_tasks) {
  if (several_tasks)
    cmd->add_option("--data", tasks,
                    "Task examples: JSONL(.gz) of texts, GSM8K {question, answer}, or the corpus; repeat as NAME=FILE "
                    "for several tasks in one module");
  else
    cmd->add_option("--data", source.path, "Task examples: JSONL(.gz) of texts, GSM8K {question, answer}, or the corpus");
  cmd->add_option("--text-field", source.text_field, "Field holding the text (plain JSONL)");
  cmd->add_option("--domain", source.domain, "Only corpus documents of this domain");
  cmd->add_option("--format", source.format, "auto, text or gsm8k (GSM8K items go through the EMO prompt builder)")
      ->check(CLI::IsMember({"auto", "text", "gsm8k"}));
  cmd->add_option("--shots", source.shots, "GSM8K: exemplars before each question (the paper uses 8)");
  cmd->add_option("--limit", source.limit, "Use the first N examples (one is enough)");
  cmd->add_option("--skip", source.skip, "Skip the first N matching examples");
  cmd->add_option("--batch", batch, "Examples per forward pass");
  cmd->add_option("--max-length", max_length, "Truncate examples to this many tokens (default: the model's context)");
}

std::pair<std::string, std::string> split_named(const std::string& text) {
  const size_t eq = text.find('=');
  if (eq == std::string::npos) return {"", text};
  return {text.substr(0, eq), text.substr(eq + 1)};
}

CLI::Validator parsed_by(const std::function<void(const std::string&)>& parse, const std::string& name) {
  return CLI::Validator(
      [parse](std::string& text) {
        try {
          parse(text);
          return std::string();
        } catch (const Error& e) {
          return cat(e.field(), ": ", e.detail());  // CLI11 and recipes put the flag's name before it
        } catch (const std::exception&) {            // std::stod and friends
          return cat(text, ": expected a number");
        }
      },
      name);
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
  cmd->add_option("--keep", keep, "Experts kept per layer, shared ones included (keep 16 = 15 routed + 1 shared)");
  cmd->add_option("--keep-fraction", keep_fraction, "Fraction of each layer's experts to keep (0.25, 0.125, ...)");
  cmd->add_option("--keep-per-layer", keep_per_layer, "Per-layer budgets K0,K1,... (each >= top_k)");
  cmd->add_option("--keep-mass", keep_mass,
                  "ESFT's rule: per layer the fewest experts whose share of the method's score reaches P, at least "
                  "top_k (router-prob or frequency; ESFT uses 0.1 and 0.2)");
  cmd->add_option("--max-bytes", max_bytes,
                  "The largest module whose weight files fit in SIZE (8GB, 500MiB, bytes), never below top_k per "
                  "layer; spread over layers by the scores where the family allows (EMO)")
      ->check(parsed_by([](const std::string& text) { parse_size(text, "--max-bytes"); }, "SIZE"));
  cmd->add_option("--per-layer", per_layer,
                  "same: --keep/--keep-fraction in every layer; auto: their total spread over layers by the "
                  "scores, the largest share of a layer's routed score first (EMO's configs only)")
      ->check(CLI::IsMember({"same", "auto"}));
}

BudgetRequest BudgetFlags::request() const {
  BudgetRequest r;
  if (keep != -1) r.keep = keep;
  if (keep_fraction != -1) r.keep_fraction = keep_fraction;
  if (!keep_per_layer.empty()) r.keep_per_layer = parse_id_list(keep_per_layer, "--keep-per-layer");
  if (keep_mass != -1) r.keep_mass = keep_mass;
  if (!max_bytes.empty()) r.max_bytes = parse_size(max_bytes, "--max-bytes");
  r.per_layer_auto = per_layer == "auto";
  return r;
}

RoutedExamples read_examples(const ExampleFlags& flags, const LoadedModel& m) {
  if (flags.source.path.empty()) fail("examples", "--data", "give the task examples with --data FILE");
  RoutedExamples r;
  r.examples = load_examples(flags.source);
  int64_t max_len = flags.max_length > 0 ? flags.max_length : m.model->config().max_position_embeddings;
  r.tokens = tokenize_examples(r.examples, *m.tokenizer, max_len);
  if (r.tokens.truncated)
    log_warn(r.tokens.truncated, " example(s) longer than ", max_len, " tokens were truncated");
  if (r.tokens.ids.empty()) fail(flags.source.path, "", "the examples tokenize to nothing");
  return r;
}

RouteStats collect_with_progress(LoadedModel& m, const std::string& model_hash, const RoutedExamples& ex,
                                 const ExampleFlags& flags, const RoutingControl* routing) {
  Progress bar("route", uint64_t(ex.tokens.tokens), "tokens");
  CollectOptions co;
  co.batch = flags.batch;
  co.routing = routing;
  co.progress = [&](int64_t done, int64_t) { bar.update(uint64_t(done)); };
  Json settings = {{"data", flags.source.path}, {"format", ex.examples.format}, {"text_field", flags.source.text_field},
                   {"domain", flags.source.domain}, {"shots", flags.source.shots}, {"limit", flags.source.limit},
                   {"skip", flags.source.skip}, {"max_length", flags.max_length}, {"restricted", routing != nullptr}};
  RouteStats s = route_examples(*m.model, model_hash, ex.examples, ex.tokens, co, settings);
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
