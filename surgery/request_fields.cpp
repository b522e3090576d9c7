#include "surgery/request_fields.h"

#include "core/util/log.h"

namespace emo {

namespace {

using K = FieldSpec::Kind;
using Values = std::vector<std::string>;

std::vector<Field<ExampleRequest>> make_example_fields() {
  using R = ExampleRequest;
  return {
      {field("data", K::String, "Task examples: JSONL(.gz) of texts, GSM8K {question, answer}, or the corpus").reads(),
       [](R& r, const Values& v) { r.source.path = field_text("data", v); }},
      {field("text-field", K::String, "Field holding the text (plain JSONL)"),
       [](R& r, const Values& v) { r.source.text_field = field_text("text-field", v); }},
      {field("domain", K::String, "Only corpus documents of this domain"),
       [](R& r, const Values& v) { r.source.domain = field_text("domain", v); }},
      {field("format", K::String, "auto, text or gsm8k (GSM8K items go through the EMO prompt builder)")
           .one_of({"auto", "text", "gsm8k"}),
       [](R& r, const Values& v) { r.source.format = field_text("format", v); }},
      {field("shots", K::Int, "GSM8K: exemplars before each question (the paper uses 8)"),
       [](R& r, const Values& v) { r.source.shots = int(field_int("shots", v)); }},
      {field("limit", K::Int, "Use the first N examples (one is enough)").count(),
       [](R& r, const Values& v) { r.source.limit = size_t(field_count("limit", v)); }},
      {field("skip", K::Int, "Skip the first N matching examples").count(),
       [](R& r, const Values& v) { r.source.skip = size_t(field_count("skip", v)); }},
      {field("batch", K::Int, "Examples per forward pass"),
       [](R& r, const Values& v) { r.batch = field_int("batch", v); }},
      {field("max-length", K::Int, "Truncate examples to this many tokens (default: the model's context)"),
       [](R& r, const Values& v) { r.max_length = field_int("max-length", v); }},
  };
}

std::vector<Field<BudgetRequest>> make_budget_fields() {
  using R = BudgetRequest;
  return {
      {field("keep", K::Int, "Experts kept per layer, shared ones included (keep 16 = 15 routed + 1 shared)"),
       [](R& r, const Values& v) { r.keep = field_int("keep", v); }},
      {field("keep-fraction", K::Float, "Fraction of each layer's experts to keep (0.25, 0.125, ...)"),
       [](R& r, const Values& v) { r.keep_fraction = field_float("keep-fraction", v); }},
      {field("keep-per-layer", K::String, "Per-layer budgets K0,K1,... (each >= top_k)"),
       [](R& r, const Values& v) { r.keep_per_layer = parse_id_list(field_text("keep-per-layer", v), "--keep-per-layer"); }},
      {field("keep-mass", K::Float,
             "ESFT's rule: per layer the fewest experts whose share of the method's score reaches P, at least "
             "top_k (router-prob or frequency; ESFT uses 0.1 and 0.2)"),
       [](R& r, const Values& v) { r.keep_mass = field_float("keep-mass", v); }},
      {field("max-bytes", K::String,
             "The largest module whose weight files fit in SIZE (8GB, 500MiB, bytes), never below top_k per "
             "layer; spread over layers by the scores where the family allows (EMO)")
           .checked(checked_by([](const std::string& text) { parse_size(text, "--max-bytes"); }), "SIZE"),
       [](R& r, const Values& v) { r.max_bytes = parse_size(field_text("max-bytes", v), "--max-bytes"); }},
      {field("per-layer", K::String,
             "same: --keep/--keep-fraction in every layer; auto: their total spread over layers by the "
             "scores, the largest share of a layer's routed score first (EMO's configs only)")
           .one_of({"same", "auto"}),
       [](R& r, const Values& v) { r.per_layer_auto = field_text("per-layer", v) == "auto"; }},
  };
}

}  // namespace

const std::vector<Field<ExampleRequest>>& example_fields() {
  static const std::vector<Field<ExampleRequest>> fields = make_example_fields();
  return fields;
}

const std::vector<Field<BudgetRequest>>& budget_fields() {
  static const std::vector<Field<BudgetRequest>> fields = make_budget_fields();
  return fields;
}

}  // namespace emo
