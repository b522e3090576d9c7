#include "finetune/train_fields.h"

#include "core/util/error.h"
#include "finetune/optim.h"

namespace emo {

namespace {

using K = FieldSpec::Kind;
using T = TrainOptions;

// A row setting one of the trainer's AdamW settings (TrainOptions::adam).
Field<T> adam_row(FieldSpec spec, double AdamWOptions::*member) {
  const std::string key = spec.key;
  return {std::move(spec), [key, member](T& t, const std::vector<std::string>& v) { t.adam.*member = field_float(key, v); }};
}

}  // namespace

std::vector<Field<T>> trainer_rows(const char* g) {
  return {
      member_field<T>(field("batch-size", K::Int, "Sequences per optimizer step, over all processes").in(g),
                      &T::batch_size),
      member_field<T>(field("micro-batch-size", K::Int,
                            "Sequences per forward pass on one process (gradient accumulation; default: all of its "
                            "share)")
                          .in(g),
                      &T::micro_batch),
      member_field<T>(field("max-steps", K::Int, "Optimizer steps (wins over --epochs)").in(g), &T::max_steps),
      member_field<T>(field("epochs", K::Float, "Passes over the data (fractions allowed)").in(g), &T::epochs),
      member_field<T>(field("lr", K::Float, "Peak learning rate").in(g), &T::lr),
      {field("schedule", K::String,
             "linear, cosine or constant (after the warm-up), or wsd (the peak held, then a linear fall over "
             "--decay-ratio)")
           .one_of({"linear", "cosine", "constant", "wsd"})
           .in(g),
       [](T& t, const std::vector<std::string>& v) { t.schedule = parse_schedule(field_text("schedule", v)); }},
      member_field<T>(field("warmup-ratio", K::Float, "Warm-up as a fraction of the steps").in(g), &T::warmup_ratio),
      member_field<T>(field("warmup-steps", K::Int, "Warm-up steps (wins over --warmup-ratio)").in(g), &T::warmup_steps),
      {field("decay-ratio", K::Float, "--schedule wsd: the last fraction of the steps, in which the rate falls to the final one (default 0.2)")
           .in(g),
       [](T& t, const std::vector<std::string>& v) {
         t.decay_ratio = field_float("decay-ratio", v);
         if (!(t.decay_ratio >= 0 && t.decay_ratio <= 1)) fail("--decay-ratio", v.front(), "must be in [0, 1]");
       }},
      member_field<T>(field("final-lr-ratio", K::Float, "Learning rate at the end, as a fraction of the peak").in(g),
                      &T::final_lr_ratio),
      adam_row(field("weight-decay", K::Float, "AdamW decoupled weight decay").in(g), &AdamWOptions::weight_decay),
      member_field<T>(field("decay-all", K::Bool, "Also decay norms, embeddings and biases").in(g), &T::decay_all),
      adam_row(field("beta1", K::Float, "AdamW beta1").in(g), &AdamWOptions::beta1),
      adam_row(field("beta2", K::Float, "AdamW beta2").in(g), &AdamWOptions::beta2),
      adam_row(field("adam-eps", K::Float, "AdamW epsilon").in(g), &AdamWOptions::eps),
      member_field<T>(field("clip", K::Float, "Clip the global gradient norm to this (0: off)").in(g), &T::clip),
  };
}

}  // namespace emo
