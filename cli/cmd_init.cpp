// emo init: a randomly initialised checkpoint in exact HF layout, from a preset or a
// config file, deterministic for a seed, written streaming.
#include <yaml-cpp/yaml.h>

#include "cli/common.h"
#include "core/checkpoint/init.h"
#include "core/checkpoint/summary.h"
#include "core/io/sha256.h"
#include "core/io/yaml.h"
#include "core/util/log.h"
#include "core/util/progress.h"

namespace emo::cli {


void add_init(CLI::App& app) {
  struct Opts {
    std::string preset, config, out, dtype, layout = "per-expert", shard_size = "5GB";
    uint64_t seed = 0;
    std::vector<std::string> sets;
    bool force = false, json = false;
  };
  auto o = std::make_shared<Opts>();
  std::string presets_help = "Model preset:";
  for (const auto& p : presets()) presets_help += "\n  " + p.name + ": " + p.description;
  auto* cmd = app.add_subcommand("init", "Write a randomly initialised model from a preset or a config file");
  auto* preset = cmd->add_option("--preset", o->preset, presets_help);
  auto* config = cmd->add_option("--config", o->config, "config.json (or YAML with the same keys) to initialise instead of a preset");
  preset->excludes(config);
  cmd->add_option("--out", o->out, "Output checkpoint directory")->required();
  cmd->add_option("--seed", o->seed, "Random seed (same seed, same bytes)");
  cmd->add_option("--dtype", o->dtype, "Storage dtype: bf16, fp16, fp32 (default: the preset's)");
  cmd->add_option("--set", o->sets, "Override a config key: --set num_hidden_layers=4 (repeatable)");
  cmd->add_option("--layout", o->layout, "Expert tensors: per-expert (transformers v4, allenai/EMO) or fused (transformers v5)")
      ->check(CLI::IsMember({"per-expert", "fused"}));
  cmd->add_option("--shard-size", o->shard_size, "Largest weight file before sharding (HF default 5GB)");
  cmd->add_flag("--force", o->force, "Replace --out if it exists");
  cmd->add_flag("--json", o->json, "Print the result as JSON");
  cmd->footer(
      "Writes DIR/config.json, model.safetensors (or shards + model.safetensors.index.json), the tokenizer files of the\n"
      "preset, provenance.yaml and README.md. Example: emo init --preset tiny --out out/tiny --seed 1");
  cmd->callback([o] {
    if (o->preset.empty() && o->config.empty()) fail("emo init", "--preset", "give --preset NAME or --config FILE");
    const Preset* preset = o->preset.empty() ? nullptr : &find_preset(o->preset);
    ModelConfig config = preset ? ModelConfig::from_json(parse_json(preset->config_json, "preset " + preset->name),
                                                         "preset " + preset->name)
                                : load_model_config_file(o->config);
    config.apply_overrides(parse_sets(o->sets));
    InitOptions options;
    options.seed = o->seed;
    options.dtype = preset ? preset->dtype : DType::F32;
    if (!o->dtype.empty()) {
      auto d = dtype_from_user(o->dtype);
      if (!d) fail("--dtype", o->dtype, "unknown dtype (bf16, fp16, fp32, fp64)");
      options.dtype = *d;
    }
    options.write.layout = o->layout == "fused" ? ExpertLayout::Fused : ExpertLayout::PerExpert;
    options.write.max_shard_bytes = parse_size(o->shard_size, "--shard-size");

    Provenance prov("init");
    prov.argv = globals().argv;
    prov.settings["preset"] = o->preset;
    prov.settings["config"] = o->config;
    prov.settings["seed"] = o->seed;
    prov.settings["dtype"] = dtype_name(options.dtype);
    prov.settings["layout"] = o->layout;
    prov.settings["shard_size"] = options.write.max_shard_bytes;
    for (const auto& [k, v] : parse_sets(o->sets)) prov.settings["set"][k] = v;
    if (!o->config.empty()) prov.add_input("config", o->config, hash_file(o->config));

    AtomicDir out(o->out, o->force);
    ParamCounts params = count_params(config);
    log_info("initialising ", human_count(double(params.total)), " parameters (",
             human_bytes(double(params.total * dtype_size(options.dtype))), " in ", dtype_name(options.dtype), ") into ",
             o->out);
    std::string tokenizer = preset ? preset->tokenizer : default_tokenizer_for(config);
    if (!tokenizer.empty()) {
      fs::path tdir = data_root() / "tokenizers" / tokenizer;
      write_tokenizer_files(out.path(), tdir, config);
      prov.add_input("tokenizer", (tdir / "tokenizer.json").string(), hash_file((tdir / "tokenizer.json").string()));
    } else {
      log_warn("preset ", o->preset, " uses a tokenizer emo does not ship (GPT-NeoX-style, vocabulary ", config.vocab_size,
               "): no tokenizer written; copy tokenizer.json into ", o->out, " yourself");
    }
    prov.output_hash = write_initialised_model(out.path(), config, options);
    prov.finished = now_iso8601();
    prov.metrics["parameters"] = params.total;
    prov.metrics["active_parameters"] = params.active;
    prov.write(out.path());
    write_file_atomic(out / kModelCardFile,
                      model_card("emo init: " + (preset ? preset->name : o->config), config, prov,
                                 "A randomly initialised model (HF layout), made by `emo init`. It has not been trained."));
    out.commit();
    if (o->json) {
      print_json({{"out", out.target().string()}, {"content_hash", prov.output_hash}, {"parameters", params.total}});
    } else {
      print_line("wrote " + out.target().string() + " (" + human_count(double(params.total)) + " parameters, " +
                 prov.output_hash + ")");
    }
  });
}

EMO_REGISTER_COMMAND(20, add_init);

}  // namespace emo::cli
