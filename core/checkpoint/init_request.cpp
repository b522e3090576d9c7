// emo init's request, its fields, and the entry point that owns OUT.
#include "core/checkpoint/init.h"
#include "core/checkpoint/provenance.h"
#include "core/checkpoint/summary.h"
#include "core/io/sha256.h"
#include "core/io/yaml.h"
#include "core/util/error.h"
#include "core/util/log.h"

namespace emo {

namespace {

ModelConfig config_of(const InitRequest& r, const Preset* preset) {
  ModelConfig config = preset ? ModelConfig::from_json(parse_json(preset->config_json, "preset " + preset->name),
                                                       "preset " + preset->name)
                              : load_model_config_file(r.config.string());
  config.apply_overrides(parse_sets(r.sets));
  return config;
}

InitOptions options_of(const InitRequest& r, const Preset* preset) {
  InitOptions options;
  options.seed = r.seed;
  options.dtype = preset ? preset->dtype : DType::F32;
  if (!r.dtype.empty()) {
    auto d = dtype_from_user(r.dtype);
    if (!d) fail("--dtype", r.dtype, "unknown dtype (bf16, fp16, fp32, fp64)");
    options.dtype = *d;
  }
  options.write.layout = r.layout == "fused" ? ExpertLayout::Fused : ExpertLayout::PerExpert;
  options.write.max_shard_bytes = parse_size(r.shard_size, "--shard-size");
  return options;
}

}  // namespace

InitResult run_init(const InitRequest& r) {
  if (r.preset.empty() == r.config.empty()) fail("emo init", "--preset", "give --preset NAME or --config FILE (one of them)");
  const Preset* preset = r.preset.empty() ? nullptr : &find_preset(r.preset);
  const ModelConfig config = config_of(r, preset);
  const InitOptions options = options_of(r, preset);
  Provenance prov("init");
  prov.argv = r.command_line;
  prov.settings["preset"] = r.preset;
  prov.settings["config"] = r.config.string();
  prov.settings["seed"] = r.seed;
  prov.settings["dtype"] = dtype_name(options.dtype);
  prov.settings["layout"] = r.layout;
  prov.settings["shard_size"] = options.write.max_shard_bytes;
  for (const auto& [k, v] : parse_sets(r.sets)) prov.settings["set"][k] = v;
  if (!r.config.empty()) prov.add_input("config", r.config.string(), hash_file(r.config.string()));

  AtomicDir out(r.out, r.overwrite);
  const ParamCounts params = count_params(config);
  log_info("initialising ", human_count(double(params.total)), " parameters (",
           human_bytes(double(params.total * dtype_size(options.dtype))), " in ", dtype_name(options.dtype), ") into ",
           r.out.string());
  const std::string tokenizer = preset ? preset->tokenizer : default_tokenizer_for(config);
  if (!tokenizer.empty()) {
    const fs::path tdir = r.data_root / "tokenizers" / tokenizer;
    write_tokenizer_files(out.path(), tdir, config);
    prov.add_input("tokenizer", (tdir / "tokenizer.json").string(), hash_file((tdir / "tokenizer.json").string()));
  } else {
    log_warn("preset ", r.preset, " uses a tokenizer emo does not ship (GPT-NeoX-style, vocabulary ", config.vocab_size,
             "): no tokenizer written; copy tokenizer.json into ", r.out.string(), " yourself");
  }
  prov.output_hash = write_initialised_model(out.path(), config, options);
  prov.finished = now_iso8601();
  prov.metrics["parameters"] = params.total;
  prov.metrics["active_parameters"] = params.active;
  prov.write(out.path());
  write_file_atomic(out / kModelCardFile,
                    model_card("emo init: " + (preset ? preset->name : r.config.string()), config, prov,
                               "A randomly initialised model (HF layout), made by `emo init`. It has not been trained."));
  out.commit();
  return {out.target(), prov.output_hash, params.total};
}

namespace {

using K = FieldSpec::Kind;

std::string presets_help() {
  std::string help = "Model preset:";
  for (const auto& p : presets()) help += "\n  " + p.name + ": " + p.description;
  return help;
}

RequestSpec<InitRequest> make_spec() {
  using R = InitRequest;
  RequestSpec<R> s;
  s.command = "init";
  s.summary = "Write a randomly initialised model from a preset or a config file";
  s.footer =
      "Writes DIR/config.json, model.safetensors (or shards + model.safetensors.index.json), the tokenizer files of the\n"
      "preset, provenance.yaml and README.md. Example: emo init --preset tiny --out out/tiny --seed 1";
  s.fields = {
      member_field(field("preset", K::String, presets_help()), &R::preset),
      member_field(field("config", K::String, "config.json (or YAML with the same keys) to initialise instead of a preset")
                       .reads(),
                   &R::config),
      member_field(field("out", K::String, "Output checkpoint directory").must().caller_owned(), &R::out),
      member_field(field("seed", K::Int, "Random seed (same seed, same bytes)").count(), &R::seed),
      member_field(field("dtype", K::String, "Storage dtype: bf16, fp16, fp32 (default: the preset's)"), &R::dtype),
      {field("set", K::List, "Override a config key: --set num_hidden_layers=4 (repeatable)"),
       [](R& r, const std::vector<std::string>& v) { r.sets = v; }},
      member_field(field("layout", K::String, "Expert tensors: per-expert (transformers v4, allenai/EMO) or fused (transformers v5)")
                       .one_of({"per-expert", "fused"}),
                   &R::layout),
      member_field(field("shard-size", K::String, "Largest weight file before sharding (HF default 5GB)"), &R::shard_size),
      member_field(field("force", K::Bool, "Replace --out if it exists").caller_owned(), &R::overwrite),
  };
  return s;
}

}  // namespace

const RequestSpec<InitRequest>& init_request_spec() { return built_once<InitRequest, make_spec>(); }

}  // namespace emo
