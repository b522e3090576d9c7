// emo pretrain: a causal LM from scratch (a config, a preset) or from a checkpoint on a
// packed corpus, with EMO's document-pool router or the standard one, on the finetune
// trainer (one process or data-parallel under torchrun / srun).
#include <cmath>

#include "cli/common.h"
#include "cli/training.h"
#include "core/checkpoint/init.h"
#include "core/model/compat.h"
#include "core/model/runtime.h"
#include "core/util/error.h"
#include "core/util/log.h"
#include "core/util/progress.h"
#include "pretrain/pretrain.h"

namespace emo::cli {

namespace {

struct Opts {
  std::string config, preset, model, data, out, tokenizer, router = "emo", device = "auto", precision = "auto";
  std::string schedule = "cosine", lb_scope = "global", dist_backend = "auto", text_field = "text", domain, cache_dir;
  std::vector<std::string> sets;
  uint64_t init_seed = 0, seed = 0;
  int64_t pool_min = 0, pool_max = 0, seq_len = 0, save_every = 0, ce_chunk = 256;
  size_t limit = 0, bucket_mb = 25;
  int keep_last = 0, dist_timeout = kDefaultDistTimeoutS;
  bool no_cache = false, skip_bad = false, checkpoint_activations = false, resume = false, force = false;
  bool zero1 = false, json = false;
  TrainOptions t = PretrainOptions::default_train_options();
};

void add_options(CLI::App* cmd, Opts& o) {
  auto* src = "Model (one of)";
  auto* config = cmd->add_option("--config", o.config, "Model config: YAML or JSON with config.json's keys")->group(src);
  auto* preset = cmd->add_option("--preset", o.preset, "An emo init preset (tiny, micro, emo-1b14b, ...)")->group(src);
  auto* model = cmd->add_option("--model", o.model, "Continue pretraining this checkpoint")->group(src);
  config->excludes(preset)->excludes(model);
  preset->excludes(model);
  cmd->add_option("--set", o.sets, "Override a config key of a new model: --set num_experts=32 (repeatable)")->group(src);
  cmd->add_option("--init-seed", o.init_seed, "Seed of the initial weights (emo init's initialiser)")->group(src);
  cmd->add_option("--data", o.data, "{text} JSONL(.gz) corpus")->required();
  cmd->add_option("--out", o.out, "Output directory: the model, init/, metrics.jsonl, checkpoints/")->required();
  auto* r = "Router";
  cmd->add_option("--router", o.router, "emo (document pools) or standard (per-token top-k)")
      ->check(CLI::IsMember({"emo", "standard"}))
      ->group(r);
  cmd->add_option("--pool-min", o.pool_min, "Smallest document pool, in routed experts (default: max(routed top-k, R/16))")
      ->group(r);
  cmd->add_option("--pool-max", o.pool_max, "Largest document pool (default: all R routed experts)")->group(r);
  cmd->add_option("--lb-probs", o.t.lb_probs,
                  "Load balancing's probabilities: pooled (softmax after the pool mask, as allenai/EMO) or unpooled")
      ->check(CLI::IsMember({"pooled", "unpooled"}))
      ->group(r);
  auto* g = "Data";
  cmd->add_option("--seq-len", o.seq_len, "Tokens per packed sequence (default: min(4096, the context))")->group(g);
  cmd->add_option("--text-field", o.text_field, "The field holding the document")->group(g);
  cmd->add_option("--domain", o.domain, "Only documents of this domain")->group(g);
  cmd->add_option("--limit", o.limit, "At most this many documents")->group(g);
  cmd->add_flag("--skip-bad", o.skip_bad, "Skip malformed lines (counted) instead of failing")->group(g);
  cmd->add_option("--cache-dir", o.cache_dir, "Token cache (default: $EMO_CACHE or ~/.cache/emo)")->group(g);
  cmd->add_flag("--no-cache", o.no_cache, "Tokenize without the cache")->group(g);
  cmd->add_option("--tokenizer", o.tokenizer, "tokenizer.json (default: the model's)")->group(g);
  auto* t = "Training (defaults: EMO's pretraining config)";
  cmd->add_option("--batch-size", o.t.batch_size, "Sequences per optimizer step, over all processes")->group(t);
  cmd->add_option("--micro-batch-size", o.t.micro_batch, "Sequences per forward pass on one process")->group(t);
  cmd->add_option("--max-steps", o.t.max_steps, "Optimizer steps (wins over --epochs)")->group(t);
  cmd->add_option("--epochs", o.t.epochs, "Passes over the data")->group(t);
  cmd->add_option("--lr", o.t.lr, "Peak learning rate")->group(t);
  cmd->add_option("--schedule", o.schedule, "cosine, linear or constant (after the warm-up)")
      ->check(CLI::IsMember({"linear", "cosine", "constant"}))
      ->group(t);
  cmd->add_option("--warmup-ratio", o.t.warmup_ratio, "Warm-up as a fraction of the steps")->group(t);
  cmd->add_option("--warmup-steps", o.t.warmup_steps, "Warm-up steps (wins over --warmup-ratio)")->group(t);
  cmd->add_option("--final-lr-ratio", o.t.final_lr_ratio, "Learning rate at the end, as a fraction of the peak")->group(t);
  cmd->add_option("--weight-decay", o.t.adam.weight_decay, "AdamW decoupled weight decay")->group(t);
  cmd->add_option("--beta1", o.t.adam.beta1, "AdamW beta1")->group(t);
  cmd->add_option("--beta2", o.t.adam.beta2, "AdamW beta2")->group(t);
  cmd->add_option("--clip", o.t.clip, "Clip the global gradient norm to this (0: off)")->group(t);
  cmd->add_option("--lb-weight", o.t.lb_weight,
                  "Load-balancing weight (per MoE layer, summed; default allenai/EMO's 0.1). With --router emo, small "
                  "models train better with 0.01 (docs/results/emo-tiny64.md)")
      ->group(t);
  cmd->add_option("--z-loss-weight", o.t.z_weight, "Router z-loss weight (per MoE layer, summed)")->group(t);
  cmd->add_option("--lb-scope", o.lb_scope, "global (counts over the whole batch) or micro")
      ->check(CLI::IsMember({"global", "micro"}))
      ->group(t);
  cmd->add_option("--seed", o.seed, "Seed of the data order and of the pool draws")->group(t);
  cmd->add_flag("--checkpoint-activations", o.checkpoint_activations, "Recompute each layer in backward")->group(t);
  cmd->add_option("--precision", o.precision, "auto (fp32 on CPU, bf16 autocast on GPU), fp32, bf16")
      ->check(CLI::IsMember({"auto", "fp32", "bf16"}))
      ->group(t);
  cmd->add_option("--ce-chunk", o.ce_chunk, "Rows per chunk of the fused head + cross entropy")->group(t);
  auto* c = "Checkpoints";
  cmd->add_option("--save-every", o.save_every, "Write a checkpoint every N steps (and always at the end)")->group(c);
  cmd->add_option("--keep-last", o.keep_last, "Keep only the last K checkpoints (0: all)")->group(c);
  cmd->add_flag("--resume", o.resume, "Continue the run in --out from its latest complete checkpoint")->group(c);
  cmd->add_flag("--force", o.force, "Delete --out and start over")->group(c);
  auto* d = "Distributed (torchrun / srun set the ranks)";
  cmd->add_option("--dist-backend", o.dist_backend, "auto (nccl on GPU, gloo on CPU), gloo, nccl")
      ->check(CLI::IsMember({"auto", "gloo", "nccl"}))
      ->group(d);
  cmd->add_flag("--zero1", o.zero1, "Shard the optimizer state over the processes (ZeRO-1)")->group(d);
  cmd->add_option("--bucket-mb", o.bucket_mb, "Gradient all-reduce bucket size")->group(d);
  add_dist_timeout_flag(cmd, o.dist_timeout, d);
  cmd->add_option("--device", o.device, "auto, cpu, cuda");
  cmd->add_flag("--json", o.json, "Print the summary as JSON");
}

void run_pretrain(Opts& o) {
  TrainingProcess proc = start_training_process(
      {"emo pretrain", o.device, o.precision, o.dist_backend, o.out, o.dist_timeout, o.resume, o.force});
  const DistEnv& env = proc.env;
  const LoadOptions& lo = proc.load;
  const bool autocast = proc.autocast;
  const std::unique_ptr<Comm>& comm = proc.comm;
  const fs::path& out = proc.out;

  PretrainOptions p;
  p.config_file = o.config;
  p.preset = o.preset;
  p.model = o.model;
  p.sets = parse_sets(o.sets);
  p.init_seed = o.init_seed;
  if (o.model.empty()) p.tokenizer_dir = data_root() / "tokenizers" / default_tokenizer_for(pretrain_config(p));
  if (!o.preset.empty()) {
    const std::string shipped = find_preset(o.preset).tokenizer;
    p.tokenizer_dir = shipped.empty() ? fs::path() : data_root() / "tokenizers" / shipped;
  }
  p.tokenizer = o.tokenizer;
  p.data = o.data;
  p.corpus.text_field = o.text_field;
  p.corpus.domain = o.domain;
  p.corpus.seq_len = o.seq_len;
  p.corpus.limit = o.limit;
  p.corpus.skip_bad = o.skip_bad;
  p.corpus.cache_dir = o.no_cache ? "" : (o.cache_dir.empty() ? default_cache_dir() : o.cache_dir);
  p.router = parse_router_kind(o.router);
  p.pool = {o.pool_min, o.pool_max};
  if (o.pool_min > 0 && o.pool_max <= 0) p.pool.max = default_pool_range(pretrain_config(p)).max;
  p.train = o.t;
  p.train.schedule = parse_schedule(o.schedule);
  p.train.lb_scope = o.lb_scope;
  p.train.seed = o.seed;
  p.train.checkpoint_layers = o.checkpoint_activations;
  p.train.autocast_bf16 = autocast;
  p.train.ce_chunk = o.ce_chunk;
  p.train.zero1 = o.zero1;
  p.train.bucket_bytes = o.bucket_mb << 20;
  p.train.out = out;
  p.train.save_every = o.save_every;
  p.train.keep_last = o.keep_last;
  p.train.resume = o.resume;
  p.device = lo.device;
  p.comm = comm.get();
  p.argv = globals().argv;
  p.extra_settings = {{"device", lo.device.str()},
                      {"threads", at::get_num_threads()},
                      {"launcher", env.launcher},
                      {"dist_backend", comm ? comm->backend() : "none"},
                      {"torch", compat::torch_version()}};
  if (env.rank == 0) check_blas_speed_once();
  PretrainResult r = pretrain(p);
  if (env.rank != 0) return;
  Json extra = {{"router", o.router}};
  if (p.router == RouterKind::Emo) extra["pool"] = {r.pool.min, r.pool.max};
  print_train_result(r.train, out, o.json, extra, o.router + " router, ");
}

}  // namespace

void add_pretrain(CLI::App& app) {
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("pretrain", "Pretrain an MoE on a text corpus with EMO's document-pool router");
  add_options(cmd, *o);
  cmd->footer(
      "Writes OUT/ as a normal checkpoint (config.json, safetensors, tokenizer files, provenance.yaml, README.md),\n"
      "OUT/init/ (the initial model, the run's parent), OUT/metrics.jsonl and OUT/checkpoints/step-N/ (--resume\n"
      "continues from the latest). Pools are used in training only. See docs/pretrain.md. Example:\n"
      "  emo pretrain --preset tiny --data data/corpus/train.jsonl.gz --out out/emo-tiny --seq-len 256 --max-steps 300");
  cmd->callback([o] { run_pretrain(*o); });
}

EMO_REGISTER_COMMAND(95, add_pretrain);

}  // namespace emo::cli
