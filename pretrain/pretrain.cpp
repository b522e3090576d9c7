#include "pretrain/pretrain.h"

#include "core/checkpoint/content_hash.h"
#include "core/checkpoint/init.h"
#include "core/checkpoint/provenance.h"
#include "core/io/sha256.h"
#include "core/io/yaml.h"
#include "core/util/error.h"
#include "core/util/log.h"
#include "pretrain/scale.h"

namespace emo {

RouterKind parse_router_kind(const std::string& name) {
  if (name == "emo") return RouterKind::Emo;
  if (name == "standard") return RouterKind::Standard;
  fail("--router", name, "expected emo or standard");
}

const char* router_kind_name(RouterKind kind) { return kind == RouterKind::Emo ? "emo" : "standard"; }

TrainOptions PretrainOptions::default_train_options() {
  TrainOptions t;
  apply_scale(find_scale("paper"), t);  // lr, schedule, load balancing
  t.adam.beta1 = 0.9;
  t.adam.beta2 = 0.95;
  t.adam.weight_decay = 0.1;
  t.clip = 1.0;
  t.warmup_ratio = 0.1;
  t.z_weight = 0.001;
  t.batch_size = 32;
  t.max_steps = 0;
  t.epochs = 1.0;
  return t;
}

namespace {

int sources(const PretrainOptions& o) {
  return int(!o.config_file.empty()) + int(!o.preset.empty()) + int(!o.model.empty());
}

// Writes the initial model into OUT/init (rank 0; the others wait), unless a resumed run
// already has it. The initialiser is deterministic, so a rewrite gives the same bytes.
fs::path initialise(const PretrainOptions& o, const ModelConfig& config, int rank) {
  fs::path init = o.train.out / "init";
  std::error_code ec;
  const bool have = fs::exists(init / kConfigFile, ec);
  if (rank == 0 && !(o.train.resume && have)) {
    fs::create_directories(o.train.out, ec);
    AtomicDir dir(init, /*overwrite=*/true);
    if (!o.tokenizer_dir.empty()) write_tokenizer_files(dir.path(), o.tokenizer_dir, config);
    InitOptions io;
    io.seed = o.init_seed;
    io.dtype = DType::F32;
    Provenance prov("init");
    prov.argv = o.argv;
    prov.settings["preset"] = o.preset;
    prov.settings["config"] = o.config_file;
    prov.settings["seed"] = o.init_seed;
    for (const auto& [k, v] : o.sets) prov.settings["set"][k] = v;
    prov.output_hash = write_initialised_model(dir.path(), config, io);
    prov.finished = now_iso8601();
    prov.write(dir.path());
    dir.commit();
  }
  if (o.comm) o.comm->barrier();
  return init;
}

Json trajectory_settings(const PretrainOptions& o, const TrainOptions& t, const PoolRange& pool, int64_t seq_len) {
  Json s = {{"router", router_kind_name(o.router)},
            {"batch_size", t.batch_size},
            {"epochs", t.epochs},
            {"max_steps", t.max_steps},
            {"lr", t.lr},
            {"schedule", schedule_name(t.schedule)},
            {"warmup_ratio", t.warmup_ratio},
            {"warmup_steps", t.warmup_steps},
            {"final_lr_ratio", t.final_lr_ratio},
            {"weight_decay", t.adam.weight_decay},
            {"decay_all", t.decay_all},
            {"beta1", t.adam.beta1},
            {"beta2", t.adam.beta2},
            {"adam_eps", t.adam.eps},
            {"clip", t.clip},
            {"lb_weight", t.lb_weight},
            {"z_loss_weight", t.z_weight},
            {"lb_scope", t.lb_scope},
            {"router_losses", "summed over MoE layers"},
            {"seed", t.seed},
            {"shuffle", t.shuffle},
            {"drop_last", t.drop_last},
            {"seq_len", seq_len},
            {"text_field", o.corpus.text_field},
            {"domain", o.corpus.domain},
            {"limit", o.corpus.limit},
            {"precision", t.autocast_bf16 ? "bf16" : "fp32"}};
  if (o.router == RouterKind::Emo) s["pool"] = {pool.min, pool.max}, s["lb_probs"] = t.lb_probs;
  // Only when asked, so runs without it keep their settings (and recipe cache keys).
  if (o.router == RouterKind::Emo && pool.free > 0) s["pool_free"] = pool.free;
  if (o.router == RouterKind::Emo && pool.unpooled_gate) s["gate_probs"] = "unpooled";
  if (t.schedule == Schedule::Wsd) s["decay_ratio"] = t.decay_ratio;  // only then: other runs keep their cache keys
  return s;
}

// The pools of an EMO run: the options' range, the default where they leave it open.
PoolRange pool_range(const PretrainOptions& o, const ModelConfig& config) {
  const PoolRange defaults = default_pool_range(config, o.pool_divisor);
  PoolRange r = o.pool.max > 0 ? o.pool : defaults;
  if (o.pool.max > 0 && o.pool.min <= 0) r.min = defaults.min;
  r.free = o.pool.free;
  r.unpooled_gate = o.pool.unpooled_gate;
  return r;
}

}  // namespace

ModelConfig pretrain_config(const PretrainOptions& o) {
  if (!o.model.empty()) {
    if (!o.sets.empty()) fail("--set", o.sets.front().first, "overrides a new model's config; --model continues an existing one");
    return Checkpoint::open(o.model).config();
  }
  ModelConfig config;
  if (!o.preset.empty()) {
    const Preset& p = find_preset(o.preset);
    config = ModelConfig::from_json(parse_json(p.config_json, "preset " + p.name), "preset " + p.name);
  } else {
    config = load_model_config_file(o.config_file);
  }
  config.apply_overrides(o.sets);
  return config;
}

PretrainResult pretrain(const PretrainOptions& o) {
  if (sources(o) != 1) fail("emo pretrain", "--config", "give exactly one of --config FILE, --preset NAME, --model DIR");
  if (o.data.empty()) fail("emo pretrain", "--data", "no training data");
  if (o.train.out.empty()) fail("emo pretrain", "--out", "no output directory");
  const int rank = o.comm ? o.comm->rank() : 0;
  PretrainResult result;

  // EMO's router first: its constructor checks the pools, so a bad --pool-min or --pool-free
  // fails before OUT/init is written.
  ModelConfig config = pretrain_config(o);
  std::unique_ptr<DocumentPoolRouter> pools;
  if (o.router == RouterKind::Emo) {
    result.pool = pool_range(o, config);
    pools = std::make_unique<DocumentPoolRouter>(config, result.pool, o.train.seed);
  }

  // The parent checkpoint: the input model, or the freshly initialised OUT/init.
  result.init = o.model.empty() ? initialise(o, config, rank) : fs::path(o.model);
  Checkpoint ck = Checkpoint::open(result.init);
  result.parent_hash = parent_content_hash(ck);

  // Tokenizer and the packed corpus (document ids kept).
  fs::path tok_path = o.tokenizer.empty() ? result.init / "tokenizer.json" : o.tokenizer;
  std::error_code ec;
  if (!fs::exists(tok_path, ec)) fail(tok_path.string(), "", "no tokenizer (pass --tokenizer PATH)");
  Tokenizer tok = Tokenizer::load(tok_path.string());
  int32_t eos = !config.eos_token_ids.empty() ? int32_t(config.eos_token_ids[0]) : (tok.eos_id() ? *tok.eos_id() : -1);
  if (eos < 0) fail("pretrain", "eos_token_id", "the model has no EOS token and the tokenizer no <|endoftext|>");
  int64_t pad = config.pad_token_id ? *config.pad_token_id : eos;
  CorpusOptions co = o.corpus;
  if (co.seq_len <= 0) co.seq_len = std::min<int64_t>(4096, config.max_position_embeddings);
  if (co.seq_len > config.max_position_embeddings)
    fail("--seq-len", std::to_string(co.seq_len), "is longer than the model's context (", config.max_position_embeddings, ")");
  std::unique_ptr<TrainData> data = load_corpus(o.data, tok, eos, co);
  result.data_stats = data->stats;
  if (rank == 0) log_info(o.data, ": ", data->stats.dump());

  // The router: EMO's document pools through the model's routing hook, or none.
  LoadOptions lo;
  lo.dtype = torch::kFloat32;
  lo.device = o.device;
  Model model = Model::load(ck, lo);
  TrainOptions to = o.train;
  to.router_losses_summed_over_layers = true;
  if (pools) {
    to.routing = &pools->control();
    DocumentPoolRouter* p = pools.get();
    auto user_begin = o.train.on_step_begin;
    to.on_step_begin = [p, user_begin](int64_t step) {
      p->set_step(step);
      if (user_begin) user_begin(step);
    };
    if (rank == 0)
      log_info("EMO router: document pools of ", result.pool.min, "..", result.pool.max, " routed experts",
               result.pool.free > 0 ? cat(", ", result.pool.free, " of documents with none") : "");
  }

  TrainInputs in;
  in.checkpoint = &ck;
  in.parent_hash = result.parent_hash;
  in.model = &model;
  in.data = data.get();
  in.data_hash = hash_file(o.data);
  in.pad_id = pad;
  in.comm = o.comm;
  in.settings = trajectory_settings(o, to, result.pool, co.seq_len);
  in.command = "pretrain";
  in.title = std::string("emo pretrain (") + router_kind_name(o.router) + " router) on " + fs::path(o.data).filename().string();
  Provenance& prov = in.provenance;
  prov = Provenance("pretrain");
  prov.argv = o.argv;
  Json all = in.settings;
  all["data"] = o.data;
  all["out"] = o.train.out.string();
  all["init_seed"] = o.init_seed;
  all["preset"] = o.preset;
  all["config"] = o.config_file;
  all["micro_batch_size"] = to.micro_batch;
  all["save_every"] = to.save_every;
  all["world_size"] = o.comm ? o.comm->world() : 1;
  for (auto it = o.extra_settings.begin(); it != o.extra_settings.end(); ++it) all[it.key()] = it.value();
  prov.settings = json_to_yaml(all);
  prov.add_parent("model", ck.dir(), result.parent_hash);
  prov.add_input("data", fs::absolute(o.data).string(), in.data_hash);
  prov.add_input("tokenizer", fs::absolute(tok_path).string(), hash_file(tok_path.string()));
  prov.extra["data"] = json_to_yaml(data->stats);
  result.train = train(in, to);
  return result;
}

}  // namespace emo
