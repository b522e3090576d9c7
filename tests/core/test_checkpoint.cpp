// Checkpoint directories: both expert layouts read into one canonical form, the content
// hash is independent of layout and sharding, and incomplete or lying checkpoints are
// refused.
#include <catch2/catch.hpp>

#include <cstdlib>

#include "core/checkpoint/checkpoint.h"
#include "core/checkpoint/content_hash.h"
#include "core/checkpoint/init.h"
#include "core/checkpoint/summary.h"
#include "core/util/error.h"
#include "test_util.h"

using namespace emo;
using emo::test::TempDir;

namespace {

ModelConfig micro_config() {
  const Preset& p = find_preset("micro");
  return ModelConfig::from_json(parse_json(p.config_json, "micro"), "micro");
}

std::string write_micro(const fs::path& dir, ExpertLayout layout = ExpertLayout::PerExpert,
                        uint64_t shard = kDefaultShardBytes, uint64_t seed = 7) {
  fs::create_directories(dir);
  InitOptions o;
  o.seed = seed;
  o.dtype = DType::F32;
  o.write.layout = layout;
  o.write.max_shard_bytes = shard;
  return write_initialised_model(dir, micro_config(), o);
}

std::string bytes_of(const TensorView& v) { return std::string(reinterpret_cast<const char*>(v.data), v.nbytes); }

void rewrite_config(const fs::path& dir, const std::function<void(Json&)>& edit) {
  Json j = load_json_file((dir / kConfigFile).string());
  edit(j);
  write_file_atomic(dir / kConfigFile, j.dump(2));
}

}  // namespace

TEST_CASE("a micro checkpoint opens with every canonical tensor", "[checkpoint]") {
  TempDir tmp;
  std::string hash = write_micro(tmp / "m");
  Checkpoint ck = Checkpoint::open(tmp / "m");
  CHECK(ck.layout() == ExpertLayout::PerExpert);
  // embed + 2 layers x (attn norm, q k v o, mlp norm, router, 8 experts x 3) + norm + lm_head
  CHECK(ck.tensors().size() == 1 + 2 * (1 + 4 + 1 + 1 + 24) + 2);
  CHECK(ck.view("model.layers.1.mlp.experts.7.down_proj.weight").shape == Shape{32, 16});
  CHECK(ck.view("model.layers.0.self_attn.k_proj.weight").shape == Shape{16, 32});  // 2 kv heads x 8
  CHECK(content_hash(ck) == hash);  // the writer's streamed hash equals a fresh read
}

TEST_CASE("fused and per-expert layouts hold the same canonical tensors and hash", "[checkpoint]") {
  TempDir tmp;
  std::string h1 = write_micro(tmp / "per", ExpertLayout::PerExpert);
  std::string h2 = write_micro(tmp / "fused", ExpertLayout::Fused);
  std::string h3 = write_micro(tmp / "sharded", ExpertLayout::PerExpert, 20000);
  CHECK(h1 == h2);
  CHECK(h1 == h3);
  Checkpoint per = Checkpoint::open(tmp / "per"), fused = Checkpoint::open(tmp / "fused");
  Checkpoint sharded = Checkpoint::open(tmp / "sharded");
  CHECK(fused.layout() == ExpertLayout::Fused);
  CHECK(sharded.store().sharded());
  CHECK(fused.store().contains("model.layers.0.mlp.experts.gate_up_proj"));
  CHECK(fused.store().info("model.layers.0.mlp.experts.gate_up_proj").shape == Shape{8, 32, 32});
  for (const auto& t : per.tensors()) {
    INFO(t.name);
    CHECK(bytes_of(per.view(t)) == bytes_of(fused.view(t.name)));
    CHECK(bytes_of(per.view(t)) == bytes_of(sharded.view(t.name)));
  }
  CHECK(content_hash(fused) == h1);
  CHECK(content_hash(sharded) == h1);
}

TEST_CASE("our fused layout equals transformers v5's, from an independent reference", "[checkpoint][reference]") {
  // tests/reference/fuse_experts.py stacks cat([gate, up]) per expert as transformers
  // v5 does. A wrong split order would corrupt models silently, so compare bytes.
  TempDir tmp;
  write_micro(tmp / "per");
  write_micro(tmp / "ours", ExpertLayout::Fused);
  std::string cmd = emo::test::reference_script("fuse_experts.py") +
                    " --model " + (tmp / "per").string() + " --out " + (tmp / "ref").string() + " > /dev/null";
  REQUIRE(std::system(cmd.c_str()) == 0);
  Checkpoint per = Checkpoint::open(tmp / "per"), ref = Checkpoint::open(tmp / "ref");
  Checkpoint ours = Checkpoint::open(tmp / "ours");
  REQUIRE(ref.layout() == ExpertLayout::Fused);
  for (int l = 0; l < 2; ++l) {
    for (auto name : {fused_gate_up_name(family_named("emo"), l), fused_down_name(family_named("emo"), l)}) {
      INFO(name);
      CHECK(bytes_of(ref.store().view(name)) == bytes_of(ours.store().view(name)));
    }
  }
  for (const auto& t : per.tensors()) CHECK(bytes_of(per.view(t)) == bytes_of(ref.view(t.name)));
  CHECK(content_hash(ref) == content_hash(per));
}

TEST_CASE("the content hash changes with top_k and with any weight byte", "[checkpoint]") {
  TempDir tmp;
  std::string base = write_micro(tmp / "m");
  SECTION("top_k") {
    rewrite_config(tmp / "m", [](Json& j) { j["num_experts_per_tok"] = 2; });
    CHECK(content_hash(Checkpoint::open(tmp / "m")) != base);
  }
  SECTION("a bookkeeping key does not change it") {
    rewrite_config(tmp / "m", [](Json& j) { j["architectures"] = {"Something"}; j["use_cache"] = false; });
    CHECK(content_hash(Checkpoint::open(tmp / "m")) == base);
  }
  SECTION("one flipped byte") {
    Checkpoint ck = Checkpoint::open(tmp / "m");
    TensorView v = ck.view("model.layers.1.mlp.experts.3.up_proj.weight");
    uint64_t offset = uint64_t(v.data - v.owner->data()) + 5;
    std::string path = v.owner->path();
    std::string bytes = read_text_file(path);
    bytes[offset] ^= 1;
    write_file_atomic(path, bytes);
    CHECK(content_hash(Checkpoint::open(tmp / "m")) != base);
  }
  SECTION("another seed") { CHECK(write_micro(tmp / "m2", ExpertLayout::PerExpert, kDefaultShardBytes, 8) != base); }
  SECTION("the same seed again") { CHECK(write_micro(tmp / "m3") == base); }
}

TEST_CASE("initialisation is reproducible chunk by chunk and has the right statistics", "[init]") {
  std::vector<float> whole(1001), parts(1001);
  init_normal(3, "w", 0, 0.02f, whole.data(), whole.size());
  init_normal(3, "w", 0, 0.02f, parts.data(), 333);  // odd split points cut a pair
  init_normal(3, "w", 333, 0.02f, parts.data() + 333, 500);
  init_normal(3, "w", 833, 0.02f, parts.data() + 833, 168);
  CHECK(whole == parts);
  std::vector<float> big(1 << 18);
  init_normal(5, "big", 0, 1.0f, big.data(), big.size());
  double sum = 0, sq = 0;
  for (float x : big) sum += x, sq += double(x) * x;
  double mean = sum / big.size(), var = sq / big.size() - mean * mean;
  CHECK(std::abs(mean) < 0.01);
  CHECK(std::abs(var - 1.0) < 0.01);
}

TEST_CASE("the padding row of the embedding is zero and norms are one", "[init]") {
  TempDir tmp;
  write_micro(tmp / "m");
  Checkpoint ck = Checkpoint::open(tmp / "m");
  TensorView emb = ck.view("model.embed_tokens.weight");
  const float* e = reinterpret_cast<const float*>(emb.data);
  for (int i = 0; i < 32; ++i) CHECK(e[8001 * 32 + i] == 0.0f);
  CHECK(e[8000 * 32] != 0.0f);
  TensorView norm = ck.view("model.norm.weight");
  CHECK(reinterpret_cast<const float*>(norm.data)[5] == 1.0f);
}

TEST_CASE("incomplete or inconsistent checkpoints are refused", "[checkpoint][bad-input]") {
  TempDir tmp;
  write_micro(tmp / "m");
  SECTION("missing directory") {
    CHECK_THROWS_WITH(Checkpoint::open(tmp / "none"), Catch::Contains("not a checkpoint directory"));
  }
  SECTION("missing config.json") {
    fs::remove(tmp / "m" / kConfigFile);
    CHECK_THROWS_WITH(Checkpoint::open(tmp / "m"), Catch::Contains("config.json: missing"));
  }
  SECTION("config says more experts than the weights hold") {
    rewrite_config(tmp / "m", [](Json& j) { j["num_experts"] = 9; });
    CHECK_THROWS_WITH(Checkpoint::open(tmp / "m"), Catch::Contains("model.layers.0.mlp.gate.weight: shape [8, 32] but config implies [9, 32]"));
  }
  SECTION("config says fewer experts: the extra tensors are unexpected") {
    rewrite_config(tmp / "m", [](Json& j) { j["num_experts"] = 7; j["num_experts_per_tok"] = 2; });
    CHECK_THROWS_WITH(Checkpoint::open(tmp / "m"), Catch::Contains("shape [8, 32] but config implies [7, 32]"));
  }
  SECTION("config with the wrong hidden size") {
    rewrite_config(tmp / "m", [](Json& j) { j["hidden_size"] = 64; });
    CHECK_THROWS_WITH(Checkpoint::open(tmp / "m"), Catch::Contains("model.embed_tokens.weight: shape [8002, 32] but config implies [8002, 64]"));
  }
}

namespace {

std::string write_preset(const fs::path& dir, const std::string& name, ExpertLayout layout = ExpertLayout::PerExpert) {
  fs::create_directories(dir);
  InitOptions o;
  o.seed = 3;
  o.write.layout = layout;
  const Preset& p = find_preset(name);
  return write_initialised_model(dir, ModelConfig::from_json(parse_json(p.config_json, name), name), o);
}

std::string open_error(const fs::path& dir) {
  try {
    Checkpoint::open(dir);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("each family's checkpoints open in both layouts with one content hash, and Mixtral's router moves with the layout",
          "[checkpoint][families]") {
  TempDir tmp;
  for (const char* name : {"tiny-qwen3-moe", "tiny-qwen2-moe", "tiny-mixtral"}) {
    INFO(name);
    const std::string per = write_preset(tmp / (std::string(name) + "-per"), name);
    const std::string fused = write_preset(tmp / (std::string(name) + "-fused"), name, ExpertLayout::Fused);
    CHECK(per == fused);
    Checkpoint ck = Checkpoint::open(tmp / (std::string(name) + "-fused"));
    CHECK(ck.layout() == ExpertLayout::Fused);
    CHECK(content_hash(ck) == per);
  }
  // Mistral's per-expert names, v5's fused ones.
  Checkpoint per = Checkpoint::open(tmp / "tiny-mixtral-per");
  CHECK(per.store().contains("model.layers.0.block_sparse_moe.gate.weight"));
  CHECK(per.store().contains("model.layers.0.block_sparse_moe.experts.7.w2.weight"));
  Checkpoint fused = Checkpoint::open(tmp / "tiny-mixtral-fused");
  CHECK(fused.store().contains("model.layers.0.mlp.gate.weight"));
  CHECK(fused.store().contains("model.layers.0.mlp.experts.gate_up_proj"));
  CHECK(fused.view(fused.tensor("model.layers.0.block_sparse_moe.gate.weight")).shape == Shape{8, 128});
  Checkpoint qwen2 = Checkpoint::open(tmp / "tiny-qwen2-moe-per");
  CHECK(qwen2.store().contains("model.layers.3.mlp.shared_expert_gate.weight"));
}

TEST_CASE("the tensors of one family under another's config: one sentence that says so", "[checkpoint][families][bad-input]") {
  TempDir tmp;
  write_preset(tmp / "olmoe", "tiny-olmoe");
  rewrite_config(tmp / "olmoe", [](Json& j) {
    j["model_type"] = "mixtral";
    j["num_local_experts"] = j["num_experts"];
    j.erase("num_experts");
  });
  CHECK_THAT(open_error(tmp / "olmoe"),
             Catch::Contains("model.layers.0.self_attn.q_norm.weight: unexpected tensor for model_type mixtral") ||
                 Catch::Contains("missing from the weights"));
  CHECK_THAT(open_error(tmp / "olmoe"), Catch::Contains("named as a olmoe or qwen3_moe checkpoint's"));
  write_preset(tmp / "mixtral", "tiny-mixtral");
  rewrite_config(tmp / "mixtral", [](Json& j) {
    j["model_type"] = "qwen3_moe";
    j["num_experts"] = j["num_local_experts"];
    j["moe_intermediate_size"] = j["intermediate_size"];
  });
  CHECK_THAT(open_error(tmp / "mixtral"), Catch::Contains("(the weights are named as a mixtral checkpoint's: does "
                                                          "config.json give the right model_type?)"));
}

TEST_CASE("the real-shape presets have the published sizes (config only, nothing written)", "[init][families]") {
  struct Published {
    const char* preset;
    double total, active;  // billions, as the model cards state them
  };
  const Published models[] = {
      {"qwen3-30b-a3b", 30.5, 3.3},      // Qwen/Qwen3-30B-A3B: 30.5B total, 3.3B activated
      {"qwen1.5-moe-a2.7b", 14.3, 2.7},  // Qwen/Qwen1.5-MoE-A2.7B: 14.3B total, 2.7B activated
      {"mixtral-8x7b", 46.7, 12.9},      // Mixtral of Experts (arXiv 2401.04088): 46.7B total, 12.9B active
      {"emo-1b14b", 13.6, 1.49},         // EMO "1B active / 14B total": 1.08B active + 0.41B of embeddings
  };
  for (const auto& m : models) {
    INFO(m.preset);
    const Preset& p = find_preset(m.preset);
    ParamCounts n = count_params(ModelConfig::from_json(parse_json(p.config_json, m.preset), m.preset));
    CHECK(std::abs(double(n.total) / 1e9 - m.total) < 0.45);
    CHECK(std::abs(double(n.active) / 1e9 - m.active) < 0.1);
    CHECK(p.dtype == DType::BF16);
  }
}
