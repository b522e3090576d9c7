#include "pretrain/pretrain_request.h"

#include "core/checkpoint/init.h"
#include "core/model/compat.h"
#include "core/model/runtime.h"
#include "core/util/registry.h"
#include "finetune/train_fields.h"
#include "pretrain/scale.h"

namespace emo {

namespace {

using K = FieldSpec::Kind;
using R = PretrainRequest;
using T = TrainOptions;

std::vector<Field<R>> model_fields() {
  const char* g = "Model (one of)";
  return {
      member_field<R>(field("config", K::String, "Model config: YAML or JSON with config.json's keys")
                          .reads()
                          .excludes({"preset", "model"})
                          .in(g),
                      &R::config),
      member_field<R>(field("preset", K::String, "An emo init preset (tiny, micro, emo-1b14b, ...)")
                          .excludes({"config", "model"})
                          .in(g),
                      &R::preset),
      member_field<R>(field("model", K::String, "Continue pretraining this checkpoint")
                          .reads()
                          .excludes({"config", "preset"})
                          .in(g),
                      &R::model),
      {field("set", K::List, "Override a config key of a new model: --set num_experts=32 (repeatable)").in(g),
       [](R& r, const std::vector<std::string>& v) { r.sets.insert(r.sets.end(), v.begin(), v.end()); }},
      member_field<R>(field("init-seed", K::Int, "Seed of the initial weights (emo init's initialiser)").count().in(g),
                      &R::init_seed),
  };
}

std::vector<Field<R>> router_fields() {
  const char* g = "Router";
  std::vector<Field<R>> out = {
      member_field<R>(field("router", K::String, "emo (document pools) or standard (per-token top-k)")
                          .one_of({"emo", "standard"})
                          .in(g),
                      &R::router),
      member_field<R>(field("pool-min", K::Int,
                            "Smallest document pool, in routed experts (default: max(routed top-k, R/16), or the "
                            "--scale's divisor)")
                          .in(g),
                      &R::pool_min),
      member_field<R>(field("pool-max", K::Int, "Largest document pool (default: all R routed experts)").in(g),
                      &R::pool_max),
      member_field<R>(field("pool-free", K::Float,
                            "Fraction of documents routed with no pool, in every layer, as inference routes "
                            "(default 0, allenai/EMO's; more measured worse: docs/results/emo-tiny64.md)")
                          .in(g),
                      &R::pool_free),
      member_field<R>(field("gate-probs", K::String,
                            "The chosen experts' weights: pooled (the softmax after the pool mask, as allenai/EMO) "
                            "or unpooled (the pool restricts only the choice; weights as inference gives them)")
                          .one_of({"pooled", "unpooled"})
                          .in(g),
                      &R::gate_probs),
  };
  append_fields<R, T>(out,
                      {member_field<T>(field("lb-probs", K::String,
                                             "Load balancing's probabilities: pooled (softmax after the pool mask, as "
                                             "allenai/EMO) or unpooled")
                                           .one_of({"pooled", "unpooled"})
                                           .in(g),
                                       &T::lb_probs)},
                      &R::train);
  return out;
}

std::vector<Field<R>> data_fields() {
  const char* g = "Data";
  return {
      member_field<R>(field("seq-len", K::Int, "Tokens per packed sequence (default: min(4096, the context))").in(g),
                      &R::seq_len),
      member_field<R>(field("text-field", K::String, "The field holding the document").in(g), &R::text_field),
      member_field<R>(field("domain", K::String, "Only documents of this domain").in(g), &R::domain),
      member_field<R>(field("limit", K::Int, "At most this many documents").count().in(g), &R::limit),
      member_field<R>(field("skip-bad", K::Bool, "Skip malformed lines (counted) instead of failing").in(g),
                      &R::skip_bad),
      member_field<R>(field("cache-dir", K::String, "Token cache (default: $EMO_CACHE or ~/.cache/emo)").in(g),
                      &R::cache_dir),
      member_field<R>(field("no-cache", K::Bool, "Tokenize without the cache").in(g), &R::no_cache),
      member_field<R>(tokenizer_field().in(g), &R::tokenizer),
  };
}

std::vector<Field<R>> training_fields() {
  const char* g = "Training (defaults: EMO's pretraining config)";
  // The scale sets its training settings first: setters run in this order, so a flag given
  // after it (--lr, --schedule, --lb-weight, ...) wins.
  std::vector<Field<R>> out = {
      {field("scale", K::String,
             entries_help("Settings that depend on the model's scale (a flag given wins):", pretrain_scales()))
           .one_of(entry_names(pretrain_scales()))
           .in(g),
       [](R& r, const std::vector<std::string>& v) {
         r.scale = field_text("scale", v);
         apply_scale(find_scale(r.scale), r.train);
       }}};
  append_fields<R, T>(out, trainer_rows(g), &R::train);
  append_fields<R, T>(out,
                      {member_field<T>(field("lb-weight", K::Float,
                                             "Load-balancing weight (per MoE layer, summed; default: the --scale's)")
                                           .in(g),
                                       &T::lb_weight),
                       member_field<T>(field("z-loss-weight", K::Float, "Router z-loss weight (per MoE layer, summed)").in(g),
                                       &T::z_weight)},
                      &R::train);
  const std::vector<Field<R>> rest = {
      member_field<R>(field("lb-scope", K::String, "global (counts over the whole batch) or micro")
                          .one_of({"global", "micro"})
                          .in(g),
                      &R::lb_scope),
      member_field<R>(field("seed", K::Int, "Seed of the data order and of the pool draws").count().in(g), &R::seed),
      member_field<R>(field("checkpoint-activations", K::Bool, "Recompute each layer in backward").in(g),
                      &R::checkpoint_activations),
  };
  out.insert(out.end(), rest.begin(), rest.end());
  append_fields<R, ProcessSettings>(out, {precision_row(g)}, &R::process);
  out.push_back(
      member_field<R>(field("ce-chunk", K::Int, "Rows per chunk of the fused head + cross entropy").in(g), &R::ce_chunk));
  return out;
}

std::vector<Field<R>> output_fields() {
  const char* c = "Checkpoints";
  const char* d = "Distributed (torchrun / srun set the ranks)";
  std::vector<Field<R>> out = {
      member_field<R>(field("save-every", K::Int, "Write a checkpoint every N steps (and always at the end)").in(c),
                      &R::save_every),
      member_field<R>(field("keep-last", K::Int, "Keep only the last K checkpoints (0: all)").in(c), &R::keep_last),
  };
  append_fields<R, ProcessSettings>(out, {resume_row(c), force_row(c), dist_backend_row(d)}, &R::process);
  out.push_back(
      member_field<R>(field("zero1", K::Bool, "Shard the optimizer state over the processes (ZeRO-1)").in(d), &R::zero1));
  out.push_back(member_field<R>(field("bucket-mb", K::Int, "Gradient all-reduce bucket size").count().in(d), &R::bucket_mb));
  append_fields<R, ProcessSettings>(out, {dist_timeout_row(d)}, &R::process);
  return out;
}

RequestSpec<R> make_spec() {
  RequestSpec<R> spec;
  spec.command = "pretrain";
  spec.summary = "Pretrain an MoE on a text corpus with EMO's document-pool router";
  spec.footer =
      "Writes OUT/ as a normal checkpoint (config.json, safetensors, tokenizer files, provenance.yaml, README.md),\n"
      "OUT/init/ (the initial model, the run's parent), OUT/metrics.jsonl and OUT/checkpoints/step-N/ (--resume\n"
      "continues from the latest). Pools are used in training only. See docs/pretrain.md. Example:\n"
      "  emo pretrain --preset tiny --data data/corpus/train.jsonl.gz --out out/emo-tiny --seq-len 256 --max-steps 300";
  spec.fields = model_fields();
  spec.fields.push_back(member_field<R>(field("data", K::String, "{text} JSONL(.gz) corpus").must().reads(), &R::data));
  spec.fields.push_back(member_field<R>(
      field("out", K::String, "Output directory: the model, init/, metrics.jsonl, checkpoints/").must().caller_owned(),
      &R::out));
  for (auto part : {router_fields(), data_fields(), training_fields(), output_fields()})
    spec.fields.insert(spec.fields.end(), part.begin(), part.end());
  append_fields<R, ProcessSettings>(spec.fields, {device_row()}, &R::process);
  return spec;
}

// The request's model source, data and trainer settings as pretrain() takes them.
PretrainOptions pretrain_options(const R& r, const TrainingProcess& proc) {
  PretrainOptions p;
  p.config_file = r.config;
  p.preset = r.preset;
  p.model = r.model;
  p.sets = parse_sets(r.sets);
  p.init_seed = r.init_seed;
  if (r.model.empty()) p.tokenizer_dir = r.data_root / "tokenizers" / default_tokenizer_for(pretrain_config(p));
  if (!r.preset.empty()) {
    const std::string shipped = find_preset(r.preset).tokenizer;
    p.tokenizer_dir = shipped.empty() ? fs::path() : r.data_root / "tokenizers" / shipped;
  }
  p.tokenizer = r.tokenizer;
  p.data = r.data;
  p.corpus.text_field = r.text_field;
  p.corpus.domain = r.domain;
  p.corpus.seq_len = r.seq_len;
  p.corpus.limit = r.limit;
  p.corpus.skip_bad = r.skip_bad;
  p.corpus.cache_dir = token_cache_dir(r.cache_dir, r.no_cache);
  const PretrainScale& scale = find_scale(r.scale);
  p.router = parse_router_kind(r.router);
  p.pool = {r.pool_min, r.pool_max, r.pool_free, r.gate_probs == "unpooled"};
  p.pool_divisor = scale.pool_divisor;
  if (r.pool_min > 0 && r.pool_max <= 0) p.pool.max = default_pool_range(pretrain_config(p)).max;
  p.train = r.train;
  p.train.lb_scope = r.lb_scope;
  p.train.seed = r.seed;
  p.train.checkpoint_layers = r.checkpoint_activations;
  p.train.autocast_bf16 = proc.autocast;
  p.train.ce_chunk = r.ce_chunk;
  p.train.zero1 = r.zero1;
  p.train.bucket_bytes = r.bucket_mb << 20;
  p.train.out = proc.out;
  p.train.save_every = r.save_every;
  p.train.keep_last = r.keep_last;
  p.train.resume = r.process.resume;
  p.device = proc.load.device;
  p.comm = proc.comm.get();
  p.argv = r.command_line;
  p.extra_settings = {{"scale", scale.name},
                      {"device", proc.load.device.str()},
                      {"threads", at::get_num_threads()},
                      {"launcher", proc.env.launcher},
                      {"dist_backend", proc.comm ? proc.comm->backend() : "none"},
                      {"torch", compat::torch_version()}};
  return p;
}

}  // namespace

const RequestSpec<PretrainRequest>& pretrain_request_spec() { return built_once<R, make_spec>(); }

PretrainRun run_pretrain(const PretrainRequest& r) {
  TrainingProcess proc = start_training_process(r.process, "emo pretrain", r.out);
  const PretrainOptions options = pretrain_options(r, proc);
  if (proc.env.rank == 0) check_blas_speed_once();
  return {pretrain(options), proc.out, proc.env.rank == 0};
}

}  // namespace emo
