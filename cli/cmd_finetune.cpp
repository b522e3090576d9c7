// emo finetune: train a model or an extracted module on task examples (SFT) or on a text
// corpus (causal LM), on one process or data-parallel under torchrun / srun.
#include <cmath>

#include "cli/common.h"
#include "core/util/registry.h"
#include "cli/training.h"
#include "core/checkpoint/content_hash.h"
#include "core/checkpoint/experts.h"
#include "core/checkpoint/module_info.h"
#include "core/checkpoint/provenance.h"
#include "core/io/sha256.h"
#include "core/model/compat.h"
#include "core/model/generate.h"
#include "core/model/runtime.h"
#include "core/text/gsm8k.h"
#include "core/util/error.h"
#include "core/util/log.h"
#include "core/util/progress.h"
#include "eval/gsm8k_eval.h"
#include "finetune/data.h"
#include "finetune/dist.h"
#include "finetune/train_state.h"
#include "finetune/trainer.h"

namespace emo::cli {

namespace {

struct Opts {
  std::string model, data, out, tokenizer, experts, device = "auto", format = "auto";
  std::string prompt_template, completion_template, text_field = "text", domain, cache_dir;
  std::string train = "all", schedule = "linear", lb_scope = "global", dtype, precision = "auto";
  std::string dist_backend = "auto", split, train_experts;
  int shots = gsm8k_paper_shots();
  int64_t max_length = 0, seq_len = 0, batch_size = 32, micro_batch = 0, max_steps = 0, warmup_steps = -1;
  int64_t save_every = 0, ce_chunk = 256;
  int keep_last = 0, dist_timeout = kDefaultDistTimeoutS;
  size_t limit = 0, bucket_mb = 25;
  double epochs = 1.0, lr = 5e-5, warmup_ratio = 0.1, final_lr_ratio = 0.0, weight_decay = 0.0;
  double beta1 = 0.9, beta2 = 0.999, adam_eps = 1e-8, clip = 1.0, lb_weight = NAN, z_weight = 0.0;
  uint64_t seed = 0;
  bool skip_bad = false, no_cache = false, decay_all = false, checkpoint_activations = false, no_shuffle = false;
  bool drop_last = false, resume = false, force = false, zero1 = false, no_overlap = false, json = false;
};

void add_options(CLI::App* cmd, Opts& o) {
  cmd->add_option("--model", o.model, "Checkpoint to train (a full model or an extracted module)")->required();
  cmd->add_option("--data", o.data, "JSONL(.gz) training data")->required();
  cmd->add_option("--out", o.out, "Output directory: the finetuned model, metrics.jsonl, checkpoints/")->required();
  auto* g = "Data";
  cmd->add_option("--format", o.format,
                  "auto, gsm8k ({question, answer}), prompt-completion, instruction ({instruction, input, output}), "
                  "text (causal LM on {text})")
      ->check(CLI::IsMember({"auto", "gsm8k", "prompt-completion", "instruction", "text"}))
      ->group(g);
  cmd->add_option("--shots", o.shots, "gsm8k: in-context examples before each question (default: the paper's 8)")->group(g);
  cmd->add_option("--split", o.split,
                  "gsm8k: only the items of --data (the shipped GSM8K train file) whose corpus id is in this split of "
                  "the shipped corpus (train: 5,916 items; valid: the 743 `emo eval` scores)")
      ->check(CLI::IsMember({"train", "valid"}))
      ->group(g);
  cmd->add_option("--prompt-template", o.prompt_template, "Prompt from record fields, e.g. 'Q: {q}\\nA:'")->group(g);
  cmd->add_option("--completion-template", o.completion_template, "Completion from record fields, e.g. ' {a}'")->group(g);
  cmd->add_option("--max-length", o.max_length,
                  "SFT: longer examples are cut to this many tokens (EOS included; default: min(4096, the context))")
      ->group(g);
  cmd->add_option("--seq-len", o.seq_len, "text: tokens per packed sequence (default: min(1024, the context))")->group(g);
  cmd->add_option("--text-field", o.text_field, "text: the field holding the document")->group(g);
  cmd->add_option("--domain", o.domain, "text: only documents of this domain")->group(g);
  cmd->add_option("--limit", o.limit, "At most this many examples / documents")->group(g);
  cmd->add_flag("--skip-bad", o.skip_bad, "Skip malformed lines (counted) instead of failing")->group(g);
  cmd->add_option("--cache-dir", o.cache_dir, "text: token cache (default: $EMO_CACHE or ~/.cache/emo)")->group(g);
  cmd->add_flag("--no-cache", o.no_cache, "text: tokenize without the cache")->group(g);
  cmd->add_option("--tokenizer", o.tokenizer, "tokenizer.json (default: the model's)")->group(g);
  auto* t = "Training";
  cmd->add_option("--train", o.train, entries_help("What trains:", train_modes()))
      ->check(CLI::IsMember(entry_names(train_modes())))
      ->group(t);
  cmd->add_option("--train-experts", o.train_experts,
                  "Of the routed experts --train trains, only these, inside the full model (ESFT, expert-specialised "
                  "fine-tuning): an experts file (`emo select`) or a module extracted from --model")
      ->group(t);
  cmd->add_option("--batch-size", o.batch_size, "Sequences per optimizer step, over all processes")->group(t);
  cmd->add_option("--micro-batch-size", o.micro_batch,
                  "Sequences per forward pass on one process (gradient accumulation; default: all of its share)")
      ->group(t);
  cmd->add_option("--epochs", o.epochs, "Passes over the data (fractions allowed)")->group(t);
  cmd->add_option("--max-steps", o.max_steps, "Optimizer steps (wins over --epochs)")->group(t);
  cmd->add_option("--lr", o.lr, "Peak learning rate")->group(t);
  cmd->add_option("--schedule", o.schedule, "linear, cosine or constant (after the warm-up)")
      ->check(CLI::IsMember({"linear", "cosine", "constant"}))
      ->group(t);
  cmd->add_option("--warmup-ratio", o.warmup_ratio, "Warm-up as a fraction of the steps")->group(t);
  cmd->add_option("--warmup-steps", o.warmup_steps, "Warm-up steps (wins over --warmup-ratio)")->group(t);
  cmd->add_option("--final-lr-ratio", o.final_lr_ratio, "Learning rate at the end, as a fraction of the peak")->group(t);
  cmd->add_option("--weight-decay", o.weight_decay, "AdamW decoupled weight decay")->group(t);
  cmd->add_flag("--decay-all", o.decay_all, "Also decay norms, embeddings and biases")->group(t);
  cmd->add_option("--beta1", o.beta1, "AdamW beta1")->group(t);
  cmd->add_option("--beta2", o.beta2, "AdamW beta2")->group(t);
  cmd->add_option("--adam-eps", o.adam_eps, "AdamW epsilon")->group(t);
  cmd->add_option("--clip", o.clip, "Clip the global gradient norm to this (0: off)")->group(t);
  cmd->add_option("--lb-weight", o.lb_weight, "Load-balancing loss weight (default: the config's router_aux_loss_coef)")
      ->group(t);
  cmd->add_option("--z-loss-weight", o.z_weight, "Router z-loss weight")->group(t);
  cmd->add_option("--lb-scope", o.lb_scope,
                  "global: expert counts over the whole batch (all micro-batches and processes); micro: per "
                  "micro-batch, as transformers' Trainer computes it")
      ->check(CLI::IsMember({"global", "micro"}))
      ->group(t);
  cmd->add_option("--seed", o.seed, "Data order seed")->group(t);
  cmd->add_flag("--no-shuffle", o.no_shuffle, "Keep the file order")->group(t);
  cmd->add_flag("--drop-last", o.drop_last, "Drop an epoch's last incomplete batch")->group(t);
  cmd->add_flag("--checkpoint-activations", o.checkpoint_activations,
                "Recompute each layer in backward instead of keeping its activations")
      ->group(t);
  cmd->add_option("--precision", o.precision, "auto (fp32 on CPU, bf16 autocast on GPU), fp32, bf16")
      ->check(CLI::IsMember({"auto", "fp32", "bf16"}))
      ->group(t);
  cmd->add_option("--ce-chunk", o.ce_chunk, "Rows per chunk of the fused head + cross entropy")->group(t);
  auto* c = "Checkpoints";
  cmd->add_option("--save-every", o.save_every, "Write a checkpoint every N steps (and always at the end)")->group(c);
  cmd->add_option("--keep-last", o.keep_last, "Keep only the last K checkpoints (0: all)")->group(c);
  cmd->add_flag("--resume", o.resume, "Continue the run in --out from its latest complete checkpoint")->group(c);
  cmd->add_flag("--force", o.force, "Delete --out and start over")->group(c);
  cmd->add_option("--dtype", o.dtype, "dtype of the final model (default: the input's); checkpoints are float32")
      ->group(c);
  auto* d = "Distributed (torchrun / srun set the ranks)";
  cmd->add_option("--dist-backend", o.dist_backend, "auto (nccl on GPU, gloo on CPU), gloo, nccl")
      ->check(CLI::IsMember({"auto", "gloo", "nccl"}))
      ->group(d);
  cmd->add_flag("--zero1", o.zero1, "Shard the optimizer state over the processes (ZeRO-1)")->group(d);
  cmd->add_option("--bucket-mb", o.bucket_mb, "Gradient all-reduce bucket size")->group(d);
  cmd->add_flag("--no-overlap", o.no_overlap, "All-reduce after backward instead of during it")->group(d);
  add_dist_timeout_flag(cmd, o.dist_timeout, d);
  add_model_flags(cmd, o.experts, o.device);
  cmd->add_flag("--json", o.json, "Print the summary as JSON");
}

// Settings that shape the trajectory: a resume must use the same ones.
Json trajectory_settings(const Opts& o, const std::string& format, const ModelConfig& config, double lb_weight,
                         int64_t max_length, int64_t seq_len) {
  Json s = {{"format", format},         {"train", o.train},           {"batch_size", o.batch_size},
            {"epochs", o.epochs},       {"max_steps", o.max_steps},   {"lr", o.lr},
            {"schedule", o.schedule},   {"warmup_ratio", o.warmup_ratio}, {"warmup_steps", o.warmup_steps},
            {"final_lr_ratio", o.final_lr_ratio}, {"weight_decay", o.weight_decay}, {"decay_all", o.decay_all},
            {"beta1", o.beta1},         {"beta2", o.beta2},           {"adam_eps", o.adam_eps},
            {"clip", o.clip},           {"lb_weight", lb_weight},     {"z_loss_weight", o.z_weight},
            {"lb_scope", o.lb_scope},   {"seed", o.seed},             {"shuffle", !o.no_shuffle},
            {"drop_last", o.drop_last}, {"limit", o.limit},           {"skip_bad", o.skip_bad},
            {"experts", o.experts},     {"precision", o.precision}};
  if (!o.train_experts.empty()) s["train_experts"] = o.train_experts;  // only when given: cache keys stay
  if (format == "text") {
    s["seq_len"] = seq_len;
    s["text_field"] = o.text_field;
    s["domain"] = o.domain;
  } else {
    s["max_length"] = max_length;
    s["prompt_template"] = o.prompt_template;
    s["completion_template"] = o.completion_template;
    if (format == "gsm8k") s["shots"] = o.shots;
    if (!o.split.empty()) s["split"] = o.split;  // only when given: older outputs keep their cache keys
  }
  (void)config;
  return s;
}

// The 1-based lines of `gsm8k` whose items the corpus split holds (corpus id gsm8k-train-N =
// line N from 0): training on the train split keeps the valid split's items unseen.
std::vector<size_t> split_lines(const std::string& gsm8k, const fs::path& corpus) {
  std::vector<size_t> lines;
  for (const GsmSplitItem& it : gsm8k_split_items(gsm8k, corpus.string())) lines.push_back(it.line + 1);
  return lines;
}

// --train-experts names an experts file or a module directory; its config.json holds the
// module's experts.
std::string experts_file(const std::string& path) {
  return fs::is_directory(path) ? (fs::path(path) / "config.json").string() : path;
}

// The routed experts --train-experts names, in --model's numbering. A module must have been
// cut from --model itself: its ids are the parent's.
ExpertSelection experts_to_train(const std::string& path, const ModelConfig& config, const std::string& model_hash) {
  ExpertSelection sel;
  if (!fs::is_directory(path)) {
    sel = ExpertSelection::load(path);
  } else {
    Checkpoint module = Checkpoint::open(path);
    auto info = ModuleInfo::of(module.config());
    if (!info) fail("--train-experts", path, "is not a module (its config.json has no ", kModuleKey, ")");
    if (info->parent_hash != model_hash)
      fail("--train-experts", path, "was cut from ", info->parent_hash, ", not from --model (", model_hash, ")");
    const auto specs = config.layers();
    for (const auto& [layer, ids] : info->experts)
      for (int64_t id : ids)
        if (layer < int(specs.size()) && id < specs[size_t(layer)].num_routed()) sel.kept[layer].push_back(id);
  }
  sel.validate(config, experts_file(path));
  return sel;
}

YAML::Node to_yaml(const Json& j) {
  if (j.is_object()) {
    YAML::Node n(YAML::NodeType::Map);
    for (auto it = j.begin(); it != j.end(); ++it) n[it.key()] = to_yaml(it.value());
    return n;
  }
  if (j.is_array()) {
    YAML::Node n(YAML::NodeType::Sequence);
    for (const auto& v : j) n.push_back(to_yaml(v));
    return n;
  }
  if (j.is_string()) return YAML::Node(j.get<std::string>());
  if (j.is_boolean()) return YAML::Node(j.get<bool>());
  if (j.is_number_integer()) return YAML::Node(j.get<int64_t>());
  if (j.is_number()) return YAML::Node(j.get<double>());
  return YAML::Node();
}

void run_finetune(const Opts& o) {
  TrainingProcess proc = start_training_process(
      {"emo finetune", o.device, o.precision, o.dist_backend, o.out, o.dist_timeout, o.resume, o.force});
  const DistEnv& env = proc.env;
  LoadOptions lo = proc.load;
  lo.dtype = torch::kFloat32;
  const bool autocast = proc.autocast;
  const std::unique_ptr<Comm>& comm = proc.comm;
  const fs::path& out = proc.out;
  std::error_code ec;

  Checkpoint ck = Checkpoint::open(o.model);
  const ModelConfig& config = ck.config();
  std::string tok_path = o.tokenizer.empty() ? (fs::path(o.model) / "tokenizer.json").string() : o.tokenizer;
  if (!fs::exists(tok_path, ec)) fail(tok_path, "", "no tokenizer (pass --tokenizer PATH)");
  Tokenizer tok = Tokenizer::load(tok_path);
  int32_t eos = !config.eos_token_ids.empty() ? int32_t(config.eos_token_ids[0])
                                              : (tok.eos_id() ? *tok.eos_id() : -1);
  if (eos < 0) fail(o.model, "eos_token_id", "the model has no EOS token and the tokenizer no <|endoftext|>");
  int64_t pad = config.pad_token_id ? *config.pad_token_id : (tok.pad_id() ? *tok.pad_id() : eos);

  // Data.
  std::string format = o.format == "auto" ? detect_format(o.data) : o.format;
  const int64_t context = config.max_position_embeddings;
  int64_t max_length = o.max_length > 0 ? o.max_length : std::min<int64_t>(4096, context);
  int64_t seq_len = o.seq_len > 0 ? o.seq_len : std::min<int64_t>(1024, context);
  if (max_length > context)
    fail("--max-length", std::to_string(max_length), "is longer than the model's context (", context, ")");
  if (seq_len > context) fail("--seq-len", std::to_string(seq_len), "is longer than the model's context (", context, ")");
  if (!o.split.empty() && format != "gsm8k")
    fail("--split", o.split, "selects GSM8K items: it needs --format gsm8k (", o.data, " reads as ", format, ")");
  std::unique_ptr<TrainData> data;
  if (format == "text") {
    CorpusOptions co;
    co.text_field = o.text_field;
    co.domain = o.domain;
    co.seq_len = seq_len;
    co.limit = o.limit;
    co.skip_bad = o.skip_bad;
    co.cache_dir = o.no_cache ? "" : (o.cache_dir.empty() ? default_cache_dir() : o.cache_dir);
    data = load_corpus(o.data, tok, eos, co);
  } else {
    SftOptions so;
    so.format = format;
    so.shots = o.shots;
    so.prompt_template = o.prompt_template;
    so.completion_template = o.completion_template;
    so.max_length = max_length;
    so.skip_bad = o.skip_bad;
    so.limit = o.limit;
    if (!o.split.empty()) so.only_lines = split_lines(o.data, corpus_split_file(o.split));
    data = load_sft(o.data, tok, eos, so);
  }
  if (env.rank == 0) log_info(o.data, ": ", data->stats.dump());

  // Model: float32 on the training device.
  Model model = Model::load(ck, lo);
  RoutingControl routing;
  if (!o.experts.empty()) {
    ExpertSelection sel = ExpertSelection::load(o.experts);
    sel.validate(config, o.experts);
    routing = routing_for(sel, config);
  }
  if (env.rank == 0) log_info("hashing ", o.model);
  std::string parent_hash = parent_content_hash(ck);
  std::string data_hash = hash_file(o.data);

  if (env.rank == 0) check_blas_speed_once();
  double lb_weight = std::isnan(o.lb_weight) ? config.router_aux_loss_coef : o.lb_weight;
  TrainOptions to;
  to.mode = &find_train_mode(o.train);
  if (!o.train_experts.empty()) to.train_experts = experts_to_train(o.train_experts, config, parent_hash);
  to.batch_size = o.batch_size;
  to.micro_batch = o.micro_batch;
  to.max_steps = o.max_steps;
  to.epochs = o.epochs;
  to.shuffle = !o.no_shuffle;
  to.drop_last = o.drop_last;
  to.seed = o.seed;
  to.lr = o.lr;
  to.schedule = parse_schedule(o.schedule);
  to.warmup_ratio = o.warmup_ratio;
  to.warmup_steps = o.warmup_steps;
  to.final_lr_ratio = o.final_lr_ratio;
  to.adam.beta1 = o.beta1;
  to.adam.beta2 = o.beta2;
  to.adam.eps = o.adam_eps;
  to.adam.weight_decay = o.weight_decay;
  to.clip = o.clip;
  to.decay_all = o.decay_all;
  to.lb_weight = lb_weight;
  to.z_weight = o.z_weight;
  to.lb_scope = o.lb_scope;
  to.checkpoint_layers = o.checkpoint_activations;
  to.autocast_bf16 = autocast;
  to.ce_chunk = o.ce_chunk;
  to.zero1 = o.zero1;
  to.bucket_bytes = o.bucket_mb << 20;
  to.overlap = !o.no_overlap;
  to.out = out;
  to.save_every = o.save_every;
  to.keep_last = o.keep_last;
  to.resume = o.resume;
  to.output_dtype = ck.main_dtype();
  if (!o.dtype.empty()) {
    auto dt = dtype_from_user(o.dtype);
    if (!dt) fail("--dtype", o.dtype, "unknown dtype (bf16, fp16, fp32)");
    to.output_dtype = *dt;
  }
  to.routing = o.experts.empty() ? nullptr : &routing;

  TrainInputs in;
  in.checkpoint = &ck;
  in.parent_hash = parent_hash;
  in.model = &model;
  in.data = data.get();
  in.data_hash = data_hash;
  in.pad_id = pad;
  in.comm = comm.get();
  in.settings = trajectory_settings(o, format, config, lb_weight, max_length, seq_len);
  Provenance& prov = in.provenance;
  prov.argv = globals().argv;
  Json all = in.settings;
  all["model"] = o.model;
  all["data"] = o.data;
  all["out"] = o.out;
  all["micro_batch_size"] = o.micro_batch;
  all["checkpoint_activations"] = o.checkpoint_activations;
  all["save_every"] = o.save_every;
  all["keep_last"] = o.keep_last;
  all["output_dtype"] = dtype_name(to.output_dtype);
  all["device"] = lo.device.str();
  all["world_size"] = env.world;
  all["launcher"] = env.launcher;
  all["dist_backend"] = comm ? comm->backend() : "none";
  all["zero1"] = o.zero1;
  all["threads"] = at::get_num_threads();
  all["torch"] = compat::torch_version();
  prov.settings = to_yaml(all);
  prov.add_parent("model", ck.dir(), parent_hash);
  prov.add_input("data", fs::absolute(o.data).string(), data_hash);
  prov.add_input("tokenizer", fs::absolute(tok_path).string(), hash_file(tok_path));
  if (!o.train_experts.empty())
    prov.add_input("train_experts", fs::absolute(o.train_experts).string(), hash_file(experts_file(o.train_experts)));
  if (!o.split.empty()) {
    const fs::path split_corpus = corpus_split_file(o.split);
    prov.add_input("split", fs::absolute(split_corpus).string(), hash_file(split_corpus.string()));
  }
  if (!o.experts.empty()) prov.add_input("experts", fs::absolute(o.experts).string(), hash_file(o.experts));
  prov.extra["data"] = to_yaml(data->stats);
  in.title = "emo finetune: " + fs::path(o.model).filename().string() + " on " + fs::path(o.data).filename().string();

  TrainResult r = train(in, to);
  if (env.rank != 0) return;
  print_train_result(r, out, o.json);
}

}  // namespace

void add_finetune(CLI::App& app) {
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("finetune", "Train a model or module on task examples or a text corpus");
  add_options(cmd, *o);
  cmd->footer(
      "Writes OUT/ as a normal checkpoint (config.json, safetensors, tokenizer files, provenance.yaml, README.md),\n"
      "OUT/metrics.jsonl (one record per step) and OUT/checkpoints/step-N/ (float32 weights + optimizer.safetensors +\n"
      "trainer_state.json; --resume continues from the latest). Data parallel: torchrun --nproc_per_node N --no_python\n"
      "emo finetune ... (see docs/finetune.md). Example:\n"
      "  emo finetune --model out/module --data data/gsm8k/train.jsonl --out out/module-ft --train routed");
  cmd->callback([o] { run_finetune(*o); });
}

EMO_REGISTER_COMMAND(100, add_finetune);

}  // namespace emo::cli
