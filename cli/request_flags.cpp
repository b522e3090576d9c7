#include "cli/request_flags.h"

#include "cli/common.h"

namespace emo::cli {

namespace {

// CLI11's name for a value's type in --help, as its own typed options print it.
const char* type_name(const FieldSpec& spec) {
  switch (spec.kind) {
    case FieldSpec::Kind::Int: return spec.non_negative ? "UINT" : "INT";
    case FieldSpec::Kind::Float: return "FLOAT";
    default: return "TEXT";
  }
}

// Refuses what the field's kind cannot hold at parse time, as a typed CLI11 option would, with
// the words build_request would use.
CLI::Validator kind_check(const FieldSpec& spec) {
  const std::string key = spec.key;
  const FieldSpec::Kind kind = spec.kind;
  const bool count = spec.non_negative;
  auto check = checked_by([key, kind, count](const std::string& text) {
    if (kind == FieldSpec::Kind::Float) field_float(key, {text});
    else if (count) field_count(key, {text});
    else field_int(key, {text});
  });
  return CLI::Validator([check](std::string& text) { return check(text); }, "");
}

}  // namespace

void apply_field_checks(CLI::Option* o, const FieldSpec& spec) {
  if (!spec.choices.empty()) o->check(CLI::IsMember(spec.choices));
  if (spec.check) {
    auto check = spec.check;
    o->check(CLI::Validator([check](std::string& text) { return check(text); }, spec.value_name));
  }
  if (spec.required) o->required();
}

RequestFlags::RequestFlags(CLI::App* cmd, const std::vector<FieldSpec>& specs) {
  for (const auto& spec : specs) {
    auto slot = std::make_unique<Slot>();
    slot->spec = spec;
    const std::string name = "--" + spec.key;
    CLI::Option* o = nullptr;
    if (spec.kind == FieldSpec::Kind::Bool) o = cmd->add_flag(name, slot->on, spec.help);
    else if (spec.kind == FieldSpec::Kind::List) o = cmd->add_option(name, slot->list, spec.help);
    else o = cmd->add_option(name, slot->text, spec.help)->type_name(type_name(spec));
    if (spec.kind == FieldSpec::Kind::Int || spec.kind == FieldSpec::Kind::Float) o->check(kind_check(spec));
    if (spec.delimiter) o->delimiter(spec.delimiter);
    apply_field_checks(o, spec);
    if (!spec.group.empty()) o->group(spec.group);
    slot->option = o;
    slots_.push_back(std::move(slot));
  }
  for (const auto& s : slots_)
    for (const auto& key : s->spec.excluded)
      for (const auto& other : slots_)
        if (other->spec.key == key) s->option->excludes(other->option);
}

FieldValues RequestFlags::given() const {
  FieldValues out;
  for (const auto& s : slots_) {
    if (s->option->count() == 0) continue;
    if (s->spec.kind == FieldSpec::Kind::Bool) {
      if (s->on) out.push_back({s->spec.key, {}});
    } else if (s->spec.kind == FieldSpec::Kind::List) {
      out.push_back({s->spec.key, s->list});
    } else {
      out.push_back({s->spec.key, {s->text}});
    }
  }
  return out;
}

std::string first_sentence(const std::string& footer) {
  std::string text = footer.substr(0, footer.find("Example"));
  for (char& c : text)
    if (c == '\n') c = ' ';
  size_t dot = text.find(". ");
  if (dot != std::string::npos) return text.substr(0, dot + 1);
  while (!text.empty() && text.back() == ' ') text.pop_back();
  return text;
}

void StageBars::update(const std::string& stage, uint64_t done, uint64_t total, const char* unit) {
  for (auto& [name, bar] : bars_)
    if (name == stage) return bar->update(done);
  bars_.emplace_back(stage, std::make_unique<Progress>(stage, total, unit));
  bars_.back().second->update(done);
}

void StageBars::finish() {
  for (auto& [name, bar] : bars_) bar->finish();
}

std::vector<RequestStep>& request_steps() {
  static std::vector<RequestStep> steps;
  return steps;
}

RequestStepRegistration::RequestStepRegistration(RequestStep step) { request_steps().push_back(std::move(step)); }

std::vector<std::string> step_command_line(const StepCall& call) {
  std::vector<std::string> line = {"emo"};
  for (const auto& w : call.command_line()) line.push_back(w);
  return line;
}

const std::vector<std::string>& command_line() { return globals().argv; }

}  // namespace emo::cli
