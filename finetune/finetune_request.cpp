#include "finetune/finetune_request.h"

#include <algorithm>

#include "core/checkpoint/content_hash.h"
#include "core/checkpoint/experts.h"
#include "core/checkpoint/module_info.h"
#include "core/io/dtype.h"
#include "core/io/sha256.h"
#include "core/io/yaml.h"
#include "core/model/compat.h"
#include "core/model/generate.h"
#include "core/model/runtime.h"
#include "core/text/dataset.h"
#include "core/util/error.h"
#include "core/util/log.h"
#include "core/util/registry.h"
#include "finetune/data.h"
#include "finetune/train_fields.h"

namespace emo {

namespace {

using K = FieldSpec::Kind;
using R = FinetuneRequest;

// The shipped corpus split whose GSM8K ids --split keeps.
fs::path corpus_split(const R& r) { return corpus_split_path(r.data_root, r.split); }

// One training source: a --data file and its format (detected when --format is auto).
struct Source {
  std::string path, format;
};

// --data with their formats: one --format per --data, one for all, or none (auto). The
// counts of --format and --data-weight are checked here, before anything is loaded.
std::vector<Source> data_sources(const R& r) {
  if (r.format.size() > 1 && r.format.size() != r.data.size())
    fail("--format", "", "give one format for all --data or one per --data (", r.data.size(), "); got ",
         r.format.size());
  check_data_weights(r.data_weight, r.data.size());
  std::vector<Source> out;
  for (size_t i = 0; i < r.data.size(); ++i) {
    const std::string f = r.format.empty() ? "auto" : r.format[r.format.size() == 1 ? 0 : i];
    out.push_back({r.data[i], f == "auto" ? detect_format(r.data[i]) : f});
  }
  return out;
}

bool has_format(const std::vector<Source>& sources, const std::string& format) {
  return std::any_of(sources.begin(), sources.end(), [&](const Source& s) { return s.format == format; });
}

// Some source is SFT examples (any format but text).
bool has_sft(const std::vector<Source>& sources) {
  return std::any_of(sources.begin(), sources.end(), [](const Source& s) { return s.format != "text"; });
}

// One source's value as a string (the settings of a one-source run read as they always
// have), several as a list.
Json one_or_list(const std::vector<Source>& sources, std::string Source::*member) {
  if (sources.size() == 1) return sources[0].*member;
  Json list = Json::array();
  for (const auto& s : sources) list.push_back(s.*member);
  return list;
}

// Settings that shape the trajectory: a resume must use the same ones.
Json trajectory_settings(const R& r, const std::vector<Source>& sources, double lb_weight, int64_t max_length,
                         int64_t seq_len) {
  const TrainOptions& t = r.trainer;
  Json s = {{"format", one_or_list(sources, &Source::format)},
            {"train", r.train},         {"batch_size", t.batch_size},
            {"epochs", t.epochs},       {"max_steps", t.max_steps},   {"lr", t.lr},
            {"schedule", schedule_name(t.schedule)}, {"warmup_ratio", t.warmup_ratio}, {"warmup_steps", t.warmup_steps},
            {"final_lr_ratio", t.final_lr_ratio}, {"weight_decay", t.adam.weight_decay}, {"decay_all", t.decay_all},
            {"beta1", t.adam.beta1},    {"beta2", t.adam.beta2},      {"adam_eps", t.adam.eps},
            {"clip", t.clip},           {"lb_weight", lb_weight},     {"z_loss_weight", r.z_weight},
            {"lb_scope", r.lb_scope},   {"seed", r.seed},             {"shuffle", !r.no_shuffle},
            {"drop_last", r.drop_last}, {"limit", r.limit},           {"skip_bad", r.skip_bad},
            {"experts", r.experts},     {"precision", r.process.precision}};
  if (!r.train_experts.empty()) s["train_experts"] = r.train_experts;  // only when given: cache keys stay
  if (!r.data_weight.empty()) s["data_weight"] = r.data_weight;      // the same
  if (t.schedule == Schedule::Wsd) s["decay_ratio"] = t.decay_ratio;
  if (has_format(sources, "text")) {
    s["seq_len"] = seq_len;
    s["text_field"] = r.text_field;
    s["domain"] = r.domain;
  }
  if (has_sft(sources)) {
    s["max_length"] = max_length;
    s["prompt_template"] = r.prompt_template;
    s["completion_template"] = r.completion_template;
    if (has_format(sources, "gsm8k")) s["shots"] = int(r.shots);
    if (!r.split.empty()) s["split"] = r.split;  // only when given: older outputs keep their cache keys
  }
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

// Sequence lengths resolved against the model's context: (max_length for SFT, seq_len for text).
std::pair<int64_t, int64_t> sequence_lengths(const R& r, const ModelConfig& config) {
  const int64_t context = config.max_position_embeddings;
  int64_t max_length = r.max_length > 0 ? r.max_length : std::min<int64_t>(4096, context);
  int64_t seq_len = r.seq_len > 0 ? r.seq_len : std::min<int64_t>(1024, context);
  if (max_length > context)
    fail("--max-length", std::to_string(max_length), "is longer than the model's context (", context, ")");
  if (seq_len > context) fail("--seq-len", std::to_string(seq_len), "is longer than the model's context (", context, ")");
  return {max_length, seq_len};
}

// --split selects GSM8K items: some source must read as gsm8k (it applies to those only).
void check_split(const R& r, const std::vector<Source>& sources) {
  if (r.split.empty() || has_format(sources, "gsm8k")) return;
  std::string read_as;
  for (const auto& s : sources) read_as += cat(read_as.empty() ? "" : ", ", s.path, " reads as ", s.format);
  fail("--split", r.split, "selects GSM8K items: it needs --format gsm8k (", read_as, ")");
}

// One source's examples: the text options apply to text sources, the SFT ones to the rest.
std::unique_ptr<TrainData> load_source(const R& r, const Source& src, const Tokenizer& tok, int32_t eos,
                                       int64_t max_length, int64_t seq_len) {
  const std::string& format = src.format;
  if (format == "text") {
    CorpusOptions co;
    co.text_field = r.text_field;
    co.domain = r.domain;
    co.seq_len = seq_len;
    co.limit = r.limit;
    co.skip_bad = r.skip_bad;
    co.cache_dir = token_cache_dir(r.cache_dir, r.no_cache);
    return load_corpus(src.path, tok, eos, co);
  }
  SftOptions so;
  so.format = format;
  so.shots = int(r.shots);
  so.prompt_template = r.prompt_template;
  so.completion_template = r.completion_template;
  so.max_length = max_length;
  so.skip_bad = r.skip_bad;
  so.limit = r.limit;
  if (!r.split.empty() && format == "gsm8k") so.only_lines = split_lines(src.path, corpus_split(r));
  return load_sft(src.path, tok, eos, so);
}

// Every source's examples, as one dataset; each source's counts go to the log.
std::unique_ptr<TrainData> load_data(const R& r, const std::vector<Source>& sources, const Tokenizer& tok,
                                     int32_t eos, int64_t max_length, int64_t seq_len, bool log) {
  check_split(r, sources);
  std::vector<std::unique_ptr<TrainData>> parts;
  for (const auto& src : sources) {
    parts.push_back(load_source(r, src, tok, eos, max_length, seq_len));
    if (log) log_info(src.path, ": ", parts.back()->stats.dump());
  }
  return concat_data(std::move(parts), r.data_weight);
}

// The data's hash a resume checks: the file's, or for several the hash of their hashes.
std::string combined_hash(const std::vector<std::string>& hashes) {
  if (hashes.size() == 1) return hashes[0];
  std::string joined;
  for (const auto& h : hashes) joined += h + "\n";
  return "sha256:" + sha256_hex(joined);
}

TrainOptions train_options(const R& r, const TrainingProcess& proc, double lb_weight) {
  TrainOptions to = r.trainer;
  to.mode = &find_train_mode(r.train);
  to.shuffle = !r.no_shuffle;
  to.drop_last = r.drop_last;
  to.seed = r.seed;
  to.lb_weight = lb_weight;
  to.z_weight = r.z_weight;
  to.lb_scope = r.lb_scope;
  to.checkpoint_layers = r.checkpoint_activations;
  to.autocast_bf16 = proc.autocast;
  to.ce_chunk = r.ce_chunk;
  to.zero1 = r.zero1;
  to.bucket_bytes = r.bucket_mb << 20;
  to.overlap = !r.no_overlap;
  to.out = proc.out;
  to.save_every = r.save_every;
  to.keep_last = r.keep_last;
  to.resume = r.process.resume;
  return to;
}

// provenance.yaml's settings: the trajectory's, then where things are and how it ran.
Json recorded_settings(const R& r, const std::vector<Source>& sources, const Json& trajectory, const TrainOptions& to,
                       const TrainingProcess& proc) {
  Json all = trajectory;
  all["model"] = r.model;
  all["data"] = one_or_list(sources, &Source::path);
  all["out"] = r.out.string();
  all["micro_batch_size"] = r.trainer.micro_batch;
  all["checkpoint_activations"] = r.checkpoint_activations;
  all["save_every"] = r.save_every;
  all["keep_last"] = r.keep_last;
  all["output_dtype"] = dtype_name(to.output_dtype);
  all["device"] = proc.load.device.str();
  all["world_size"] = proc.env.world;
  all["launcher"] = proc.env.launcher;
  all["dist_backend"] = proc.comm ? proc.comm->backend() : "none";
  all["zero1"] = r.zero1;
  all["threads"] = at::get_num_threads();
  all["torch"] = compat::torch_version();
  return all;
}

void add_inputs(Provenance& prov, const R& r, const Checkpoint& ck, const std::string& parent_hash,
                const std::vector<std::string>& data_hashes, const std::string& tok_path) {
  prov.add_parent("model", ck.dir(), parent_hash);
  for (size_t i = 0; i < r.data.size(); ++i) prov.add_input("data", fs::absolute(r.data[i]).string(), data_hashes[i]);
  prov.add_input("tokenizer", fs::absolute(tok_path).string(), hash_file(tok_path));
  if (!r.train_experts.empty())
    prov.add_input("train_experts", fs::absolute(r.train_experts).string(), hash_file(experts_file(r.train_experts)));
  if (!r.split.empty())
    prov.add_input("split", fs::absolute(corpus_split(r)).string(), hash_file(corpus_split(r).string()));
  if (!r.experts.empty()) prov.add_input("experts", fs::absolute(r.experts).string(), hash_file(r.experts));
}

std::vector<Field<R>> data_fields() {
  const char* g = "Data";
  return {
      {field("format", K::List,
             "auto, gsm8k ({question, answer}), prompt-completion, instruction ({instruction, input, output}), text "
             "(causal LM on {text}); one for all --data or one per --data, in their order")
           .one_of({"auto", "gsm8k", "prompt-completion", "instruction", "text"})
           .in(g),
       [](R& r, const std::vector<std::string>& v) { r.format = v; }},
      {field("data-weight", K::List,
             "One per --data: a source's examples per epoch as a multiple of its size (2: each twice; 0.5: its "
             "first half), which sets its share of every batch (default 1)")
           .comma_list()
           .in(g),
       [](R& r, const std::vector<std::string>& v) {
         r.data_weight.clear();
         for (const auto& w : split_items(v)) r.data_weight.push_back(field_float("data-weight", {w}));
       }},
      member_field<R>(field("shots", K::Int, "gsm8k: in-context examples before each question (default: the paper's 8)")
                          .in(g),
                      &R::shots),
      member_field<R>(field("split", K::String,
                            "gsm8k: only the items of --data (the shipped GSM8K train file) whose corpus id is in this "
                            "split of the shipped corpus (train: 5,916 items; valid: the 743 `emo eval` scores)")
                          .one_of({"train", "valid"})
                          .in(g),
                      &R::split),
      member_field<R>(field("prompt-template", K::String, "Prompt from record fields, e.g. 'Q: {q}\\nA:'").in(g),
                      &R::prompt_template),
      member_field<R>(field("completion-template", K::String, "Completion from record fields, e.g. ' {a}'").in(g),
                      &R::completion_template),
      member_field<R>(field("max-length", K::Int,
                            "SFT: longer examples are cut to this many tokens (EOS included; default: min(4096, the "
                            "context))")
                          .in(g),
                      &R::max_length),
      member_field<R>(field("seq-len", K::Int, "text: tokens per packed sequence (default: min(1024, the context))").in(g),
                      &R::seq_len),
      member_field<R>(field("text-field", K::String, "text: the field holding the document").in(g), &R::text_field),
      member_field<R>(field("domain", K::String, "text: only documents of this domain").in(g), &R::domain),
      member_field<R>(field("limit", K::Int, "At most this many examples / documents").count().in(g), &R::limit),
      member_field<R>(field("skip-bad", K::Bool, "Skip malformed lines (counted) instead of failing").in(g),
                      &R::skip_bad),
      member_field<R>(field("cache-dir", K::String, "text: token cache (default: $EMO_CACHE or ~/.cache/emo)").in(g),
                      &R::cache_dir),
      member_field<R>(field("no-cache", K::Bool, "text: tokenize without the cache").in(g), &R::no_cache),
      member_field<R>(tokenizer_field().in(g), &R::tokenizer),
  };
}

std::vector<Field<R>> training_fields() {
  const char* g = "Training";
  std::vector<Field<R>> out = {
      member_field<R>(field("train", K::String, entries_help("What trains:", train_modes()))
                          .one_of(entry_names(train_modes()))
                          .in(g),
                      &R::train),
      member_field<R>(field("train-experts", K::String,
                            "Of the routed experts --train trains, only these, inside the full model (ESFT, "
                            "expert-specialised fine-tuning): an experts file (`emo select`) or a module extracted "
                            "from --model")
                          .reads()
                          .in(g),
                      &R::train_experts),
  };
  append_fields<R, TrainOptions>(out, trainer_rows(g), &R::trainer);
  const std::vector<Field<R>> rest = {
      member_field<R>(field("lb-weight", K::Float,
                            "Load-balancing loss weight (default: the config's router_aux_loss_coef)")
                          .in(g),
                      &R::lb_weight),
      member_field<R>(field("z-loss-weight", K::Float, "Router z-loss weight").in(g), &R::z_weight),
      member_field<R>(field("lb-scope", K::String,
                            "global: expert counts over the whole batch (all micro-batches and processes); micro: per "
                            "micro-batch, as transformers' Trainer computes it")
                          .one_of({"global", "micro"})
                          .in(g),
                      &R::lb_scope),
      member_field<R>(field("seed", K::Int, "Data order seed").count().in(g), &R::seed),
      member_field<R>(field("no-shuffle", K::Bool, "Keep the file order").in(g), &R::no_shuffle),
      member_field<R>(field("drop-last", K::Bool, "Drop an epoch's last incomplete batch").in(g), &R::drop_last),
      member_field<R>(field("checkpoint-activations", K::Bool,
                            "Recompute each layer in backward instead of keeping its activations")
                          .in(g),
                      &R::checkpoint_activations),
  };
  out.insert(out.end(), rest.begin(), rest.end());
  append_fields<R, ProcessSettings>(out, {precision_row(g)}, &R::process);
  out.push_back(
      member_field<R>(field("ce-chunk", K::Int, "Rows per chunk of the fused head + cross entropy").in(g), &R::ce_chunk));
  return out;
}

std::vector<Field<R>> checkpoint_fields() {
  const char* g = "Checkpoints";
  std::vector<Field<R>> out = {
      member_field<R>(field("save-every", K::Int, "Write a checkpoint every N steps (and always at the end)").in(g),
                      &R::save_every),
      member_field<R>(field("keep-last", K::Int, "Keep only the last K checkpoints (0: all)").in(g), &R::keep_last),
  };
  append_fields<R, ProcessSettings>(out, {resume_row(g), force_row(g)}, &R::process);
  out.push_back(member_field<R>(
      field("dtype", K::String, "dtype of the final model (default: the input's); checkpoints are float32").in(g),
      &R::dtype));
  return out;
}

std::vector<Field<R>> distributed_fields() {
  const char* g = "Distributed (torchrun / srun set the ranks)";
  std::vector<Field<R>> out;
  append_fields<R, ProcessSettings>(out, {dist_backend_row(g)}, &R::process);
  const std::vector<Field<R>> rest = {
      member_field<R>(field("zero1", K::Bool, "Shard the optimizer state over the processes (ZeRO-1)").in(g), &R::zero1),
      member_field<R>(field("bucket-mb", K::Int, "Gradient all-reduce bucket size").count().in(g), &R::bucket_mb),
      member_field<R>(field("no-overlap", K::Bool, "All-reduce after backward instead of during it").in(g),
                      &R::no_overlap),
  };
  out.insert(out.end(), rest.begin(), rest.end());
  append_fields<R, ProcessSettings>(out, {dist_timeout_row(g)}, &R::process);
  return out;
}

RequestSpec<R> make_spec() {
  RequestSpec<R> spec;
  spec.command = "finetune";
  spec.summary = "Train a model or module on task examples or a text corpus";
  spec.footer =
      "Writes OUT/ as a normal checkpoint (config.json, safetensors, tokenizer files, provenance.yaml, README.md),\n"
      "OUT/metrics.jsonl (one record per step) and OUT/checkpoints/step-N/ (float32 weights + optimizer.safetensors +\n"
      "trainer_state.json; --resume continues from the latest). Data parallel: torchrun --nproc_per_node N --no_python\n"
      "emo finetune ... (see docs/finetune.md). Example:\n"
      "  emo finetune --model out/module --data data/gsm8k/train.jsonl --out out/module-ft --train routed";
  spec.fields = {
      member_field<R>(field("model", K::String, "Checkpoint to train (a full model or an extracted module)").must().reads(),
                      &R::model),
      {field("data", K::List,
             "JSONL(.gz) training data; repeat to train on several together (their examples shuffled into one "
             "epoch; each source's options: --split and --shots for gsm8k, --domain and --seq-len for text)")
           .must()
           .reads(),
       [](R& r, const std::vector<std::string>& v) { r.data = v; }},
      member_field<R>(field("out", K::String, "Output directory: the finetuned model, metrics.jsonl, checkpoints/")
                          .must()
                          .caller_owned(),
                      &R::out),
  };
  for (auto part : {data_fields(), training_fields(), checkpoint_fields(), distributed_fields()})
    spec.fields.insert(spec.fields.end(), part.begin(), part.end());
  spec.fields.push_back(member_field<R>(experts_field(), &R::experts));
  append_fields<R, ProcessSettings>(spec.fields, {device_row()}, &R::process);
  return spec;
}

}  // namespace

const RequestSpec<FinetuneRequest>& finetune_request_spec() { return built_once<R, make_spec>(); }

FinetuneResult run_finetune(const FinetuneRequest& r) {
  TrainingProcess proc = start_training_process(r.process, "emo finetune", r.out);
  LoadOptions lo = proc.load;
  lo.dtype = torch::kFloat32;

  Checkpoint ck = Checkpoint::open(r.model);
  const ModelConfig& config = ck.config();
  const std::string tok_path = r.tokenizer.empty() ? (fs::path(r.model) / "tokenizer.json").string() : r.tokenizer;
  std::error_code ec;
  if (!fs::exists(tok_path, ec)) fail(tok_path, "", "no tokenizer (pass --tokenizer PATH)");
  Tokenizer tok = Tokenizer::load(tok_path);
  const int32_t eos = !config.eos_token_ids.empty() ? int32_t(config.eos_token_ids[0])
                                                    : (tok.eos_id() ? *tok.eos_id() : -1);
  if (eos < 0) fail(r.model, "eos_token_id", "the model has no EOS token and the tokenizer no <|endoftext|>");
  const int64_t pad = config.pad_token_id ? *config.pad_token_id : (tok.pad_id() ? *tok.pad_id() : eos);

  const std::vector<Source> sources = data_sources(r);
  const auto [max_length, seq_len] = sequence_lengths(r, config);
  std::unique_ptr<TrainData> data = load_data(r, sources, tok, eos, max_length, seq_len, proc.env.rank == 0);

  // Model: float32 on the training device.
  Model model = Model::load(ck, lo);
  RoutingControl routing;
  if (!r.experts.empty()) {
    ExpertSelection sel = ExpertSelection::load(r.experts);
    sel.validate(config, r.experts);
    routing = routing_for(sel, config);
  }
  if (proc.env.rank == 0) log_info("hashing ", r.model);
  const std::string parent_hash = parent_content_hash(ck);
  std::vector<std::string> data_hashes;
  for (const auto& path : r.data) data_hashes.push_back(hash_file(path));

  if (proc.env.rank == 0) check_blas_speed_once();
  const double lb_weight = std::isnan(r.lb_weight) ? config.router_aux_loss_coef : r.lb_weight;
  TrainOptions to = train_options(r, proc, lb_weight);
  if (!r.train_experts.empty()) to.train_experts = experts_to_train(r.train_experts, config, parent_hash);
  to.output_dtype = ck.main_dtype();
  if (!r.dtype.empty()) {
    auto dt = dtype_from_user(r.dtype);
    if (!dt) fail("--dtype", r.dtype, "unknown dtype (bf16, fp16, fp32)");
    to.output_dtype = *dt;
  }
  to.routing = r.experts.empty() ? nullptr : &routing;

  TrainInputs in;
  in.checkpoint = &ck;
  in.parent_hash = parent_hash;
  in.model = &model;
  in.data = data.get();
  in.data_hash = combined_hash(data_hashes);
  in.pad_id = pad;
  in.comm = proc.comm.get();
  in.settings = trajectory_settings(r, sources, lb_weight, max_length, seq_len);
  in.provenance.argv = r.command_line;
  in.provenance.settings = json_to_yaml(recorded_settings(r, sources, in.settings, to, proc));
  add_inputs(in.provenance, r, ck, parent_hash, data_hashes, tok_path);
  in.provenance.extra["data"] = json_to_yaml(data->stats);
  std::string names;
  for (const auto& path : r.data) names += (names.empty() ? "" : " + ") + fs::path(path).filename().string();
  in.title = "emo finetune: " + fs::path(r.model).filename().string() + " on " + names;

  return {train(in, to), proc.out, proc.env.rank == 0};
}

}  // namespace emo
