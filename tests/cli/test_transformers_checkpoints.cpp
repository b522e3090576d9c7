// A checkpoint written by transformers' own save_pretrained (v5, the pinned PyPI version),
// of each family (OLMoE, Qwen3-MoE, Qwen2-MoE, Mixtral) and in both expert layouts, goes
// through every emo command and through one recipe (route one example, extract 25%,
// finetune 5 steps, merge back); what emo writes from it (modules, conversions, merges)
// transformers loads again unchanged.
#include <catch2/catch.hpp>

#include "cli_util.h"
#include "core/io/json.h"
#include "core/util/error.h"
#include "core/util/fs.h"
#include "core/model/model_fixtures.h"

using namespace emo;
using namespace emo::test;

namespace {

// Each family with the dolma2-8k vocabulary (8000 tokens + eos + pad), so that the text
// commands can tokenize for it; the tokenizer travels in the directory as on the Hub.
constexpr const char* kVocab = R"("vocab_size":8002,"eos_token_id":8000,"pad_token_id":8001,"max_position_embeddings":512,)";
struct FamilyCase {
  const char* type;
  std::string config;
};
const FamilyCase kOlmoe{"olmoe", std::string("{") + kVocab +
    R"("hidden_size":32,"intermediate_size":16,"num_hidden_layers":2,"num_attention_heads":4,)"
    R"("num_key_value_heads":2,"num_experts":8,"num_experts_per_tok":2})"};
const FamilyCase kQwen3{"qwen3_moe", std::string("{") + kVocab +
    R"("hidden_size":32,"intermediate_size":24,"moe_intermediate_size":16,"num_hidden_layers":3,"mlp_only_layers":[1],)"
    R"("num_attention_heads":4,"num_key_value_heads":2,"head_dim":16,"num_experts":8,"num_experts_per_tok":2})"};
const FamilyCase kQwen2{"qwen2_moe", std::string("{") + kVocab +
    R"("hidden_size":32,"intermediate_size":24,"moe_intermediate_size":16,"shared_expert_intermediate_size":20,)"
    R"("num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"num_experts":8,"num_experts_per_tok":2})"};
const FamilyCase kMixtral{"mixtral", std::string("{") + kVocab +
    R"("hidden_size":32,"intermediate_size":16,"num_hidden_layers":2,"num_attention_heads":4,)"
    R"("num_key_value_heads":2,"num_local_experts":8,"num_experts_per_tok":2})"};

void check_ok(const RunResult& r) {
  INFO(r.err);
  CHECK(r.code == 0);
}

// emo logits --json of one row against transformers' logits of the same ids.
double logits_gap(const std::string& dir, const std::string& ids_text, const torch::Tensor& ids) {
  Json ours = json_of(run_emo("logits --model " + dir + " --ids " + ids_text + " --json"));
  auto peer = transformers_forward(dir, ids).at("logits")[0];
  double worst = 0;
  for (int64_t t = 0; t < peer.size(0); ++t)
    for (int64_t v = 0; v < peer.size(1); ++v)
      worst = std::max(worst, std::abs(ours[size_t(t)][size_t(v)].get<double>() - peer[t][v].item<double>()));
  return worst;
}

}  // namespace

// Every selection method and budget, every --train mode, and a config naming the wrong
// family (one line, non-zero exit, nothing written).
static void every_method_and_mode(const std::string& hf, const std::string& gsm8k, const std::string& corpus,
                                  const TempDir& dir) {
  auto path = [&](const std::string& name) { return q(dir / name); };
  const int64_t layers = load_json_file((dir / "hf/config.json").string())["num_hidden_layers"].get<int64_t>();
  std::string per_layer = "--keep-per-layer 3";
  for (int64_t l = 1; l < layers; ++l) per_layer += ",3";
  for (const char* method : {"router-prob", "layerwise-greedy", "easy-ep", "reap", "frequency", "random"}) {
    INFO(method);
    for (const std::string& budget : {std::string("--keep 4"), std::string("--keep-fraction 0.25"), per_layer}) {
      INFO(budget);
      const std::string out = path(std::string("e-") + method + ".json");
      check_ok(run_emo("select --model " + hf + " --data " + gsm8k + " --limit 1 --method " + method + " " + budget +
                       " --out " + out));
    }
  }
  for (const char* mode : {"all", "routed", "routed_shared", "routed_shared_router", "non_moe"}) {
    INFO(mode);
    check_ok(run_emo("finetune --model " + hf + " --data " + corpus + " --train " + mode +
                     " --limit 4 --batch-size 2 --max-steps 1 --seq-len 32 --threads 1 -q --out " + path(std::string("ft-") + mode)));
  }
  // The same weights under another family's model_type.
  fs::copy(dir / "hf", dir / "wrong", fs::copy_options::recursive);
  Json config = load_json_file((dir / "wrong/config.json").string());
  config["model_type"] = config["model_type"] == "olmoe" ? "qwen3_moe" : "olmoe";
  write_file_atomic(dir / "wrong/config.json", config.dump(2));
  RunResult r = run_emo("extract --model " + path("wrong") + " --data " + gsm8k + " --limit 1 --keep 4 --out " + path("wrong-module"));
  CHECK(r.code != 0);
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  CHECK_THAT(r.err, Catch::Contains("wrong"));
  CHECK(!fs::exists(dir / "wrong-module"));
}

static void every_command(const FamilyCase& family) {
  for (bool fused : {false, true}) {
    INFO((fused ? "fused experts" : "per-expert tensors"));
    TempDir dir;
    auto path = [&](const std::string& name) { return q(dir / name); };
    const std::string hf = path("hf");
    transformers_random(family.type, family.config, 5, dir / "hf", fused);
    fs::copy_file(source_dir() / "data/tokenizers/dolma2-8k/tokenizer.json", dir / "hf" / "tokenizer.json");
    const std::string gsm8k = q(source_dir() / "data/gsm8k/train.jsonl");
    const std::string corpus = q(source_dir() / "data/corpus/valid.jsonl.gz");

    Json info = json_of(run_emo("inspect " + hf + " --json"));
    CHECK(info["model_type"] == family.type);
    CHECK(info["num_experts"] == 8);
    CHECK(info["top_k"] == 2);
    CHECK(logits_gap(hf, "5,60,700,7999", torch::tensor({{5, 60, 700, 7999}}, torch::kInt64)) <= 1e-4);
    check_ok(run_emo("tokenize --tokenizer " + hf + " --text 'Hello world'"));
    check_ok(run_emo("generate --model " + hf + " --prompt 'Question: 2+2?' --max-new-tokens 3"));
    Json ppl = json_of(run_emo("eval ppl --model " + hf + " --data " + corpus + " --domain math --limit 2 --json"));
    CHECK(std::isfinite(ppl["domains"]["math"]["loss"].get<double>()));
    check_ok(run_emo("analyze prompt --model " + hf + " --text 'def add(a, b):' --json"));

    // Surgery: route, select, extract; the module is of the same family and transformers loads it.
    check_ok(run_emo("route --model " + hf + " --data " + gsm8k + " --limit 1 --out " + path("s.safetensors")));
    check_ok(run_emo("select --model " + hf + " --stats " + path("s.safetensors") + " --keep 4 --out " + path("e.json")));
    check_ok(run_emo("extract --model " + hf + " --experts " + path("e.json") + " --out " + path("module")));
    CHECK(logits_gap(path("module"), "5,60,700", torch::tensor({{5, 60, 700}}, torch::kInt64)) <= 1e-4);

    // Training and merging back: both results load in transformers.
    check_ok(run_emo("finetune --model " + path("module") + " --data " + corpus +
                     " --limit 8 --batch-size 4 --max-steps 2 --seq-len 64 --threads 1 -q --out " + path("module-ft")));
    check_ok(run_emo("merge --base " + hf + " --module " + path("module-ft") + " --out " + path("merged")));
    CHECK(logits_gap(path("merged"), "5,60,700", torch::tensor({{5, 60, 700}}, torch::kInt64)) <= 1e-4);
    check_ok(run_emo("finetune --model " + hf + " --data " + corpus +
                     " --limit 8 --batch-size 4 --max-steps 1 --seq-len 64 --threads 1 -q --out " + path("full-ft")));
    check_ok(run_emo("pretrain --model " + hf + " --data " + corpus +
                     " --limit 8 --batch-size 2 --max-steps 1 --seq-len 64 --threads 1 -q --out " + path("pretrained")));
    CHECK(logits_gap(path("full-ft"), "5,60,700", torch::tensor({{5, 60, 700}}, torch::kInt64)) <= 1e-4);

    // The other layout and a comparison: the same tensors.
    check_ok(run_emo("convert --model " + hf + " --layout " + (fused ? "per-expert" : "fused") + " --out " + path("other")));
    Json diff = json_of(run_emo("diff " + hf + " " + path("other") + " --json"));
    CHECK(diff["identical"] == true);
    CHECK(logits_gap(path("other"), "5,60,700", torch::tensor({{5, 60, 700}}, torch::kInt64)) <= 1e-4);
    check_ok(run_emo("diff " + hf + " " + path("merged")));
    check_ok(run_emo("verify " + path("module") + " " + path("merged") + " " + path("other")));
    if (!fused) every_method_and_mode(hf, gsm8k, corpus, dir);
  }
}

// The one recipe a user of each family runs first.
static void one_recipe(const FamilyCase& family) {
  TempDir dir;
  transformers_random(family.type, family.config, 9, dir / "hf");
  fs::copy_file(source_dir() / "data/tokenizers/dolma2-8k/tokenizer.json", dir / "hf" / "tokenizer.json");
  const fs::path recipe = dir / "family.yaml";
  write_file_atomic(recipe, cat(R"(name: family-module
inputs:
  base: )", (dir / "hf").string(), R"(
  gsm8k: )", (source_dir() / "data/gsm8k/train.jsonl").string(), R"(
  corpus: )", (source_dir() / "data/corpus/valid.jsonl.gz").string(), R"(
steps:
  - id: module
    command: extract
    with:
      model: ${inputs.base}
      data: ${inputs.gsm8k}
      limit: 1
      method: router-prob
      keep-fraction: 0.25
  - id: finetune
    command: finetune
    with:
      model: ${steps.module.out}
      data: ${inputs.corpus}
      format: text
      domain: math
      seq-len: 64
      batch-size: 4
      max-steps: 5
      lr: 1e-3
      train: routed
      seed: 0
  - id: merge
    command: merge
    with:
      base: ${inputs.base}
      module: ${steps.finetune.out}
)"));
  RunResult r = run_emo("run " + recipe.string() + " --workdir " + (dir / "work").string() + " --json");
  INFO(r.err);
  REQUIRE(r.code == 0);
  Json module = load_json_file((dir / "work/module/config.json").string());
  CHECK(module["num_experts_per_tok"] == 2);
  CHECK(Checkpoint::open(dir / "work/module").config().num_experts == 2);  // 25% of 8
  CHECK(logits_gap(q(dir / "work/merge"), "5,60,700", torch::tensor({{5, 60, 700}}, torch::kInt64)) <= 1e-4);
  // The merged model differs from the base only in the module's experts.
  Json diff = json_of(run_emo("diff " + q(dir / "hf") + " " + q(dir / "work/merge") + " --json"));
  CHECK(diff["identical"] == false);
}

TEST_CASE("OLMoE: every emo command reads transformers' save_pretrained output, and transformers reads emo's",
          "[cli][transformers]") {
  every_command(kOlmoe);
  one_recipe(kOlmoe);
}

TEST_CASE("Qwen3-MoE: every emo command reads transformers' save_pretrained output, and transformers reads emo's",
          "[cli][transformers]") {
  every_command(kQwen3);
  one_recipe(kQwen3);
}

TEST_CASE("Qwen2-MoE: every emo command reads transformers' save_pretrained output, and transformers reads emo's",
          "[cli][transformers]") {
  every_command(kQwen2);
  one_recipe(kQwen2);
}

TEST_CASE("Mixtral: every emo command reads transformers' save_pretrained output, and transformers reads emo's",
          "[cli][transformers]") {
  every_command(kMixtral);
  one_recipe(kMixtral);
}
