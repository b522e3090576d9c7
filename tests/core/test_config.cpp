// config.json as the reference classes read it: defaults, types, unknown keys kept,
// per-layer resolution, and the errors for configs a model cannot run.
#include <catch2/catch.hpp>

#include "core/checkpoint/config.h"
#include "core/checkpoint/module_info.h"
#include "core/util/error.h"
#include "core/util/fs.h"
#include "test_util.h"

using namespace emo;

namespace {

Json emo_base() {
  return Json::parse(R"({"model_type":"emo","vocab_size":100,"hidden_size":32,"intermediate_size":16,
    "num_hidden_layers":2,"num_attention_heads":4,"num_experts_per_tok":3,"num_experts":8,"num_shared_experts":1,"pad_token_id":0,"eos_token_id":1})");
}

std::string error_of(const Json& j) {
  try {
    ModelConfig::from_json(j, "config.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("EMO defaults are EmoConfig's", "[config]") {
  ModelConfig c = ModelConfig::from_json(emo_base(), "config.json");
  CHECK(c.model_type() == "emo");
  CHECK(c.rms_norm_eps == 1e-6);
  CHECK(c.rope_theta == 500000.0);
  CHECK(c.num_key_value_heads == 4);
  CHECK(c.resolved_head_dim() == 8);
  CHECK(c.pad_token_id == 0);
  CHECK_FALSE(c.tie_word_embeddings);
  auto layers = c.layers();
  REQUIRE(layers.size() == 2);
  CHECK(layers[0].num_experts == 8);
  CHECK(layers[0].num_shared_experts == 1);
  CHECK(layers[0].num_routed() == 7);
}

TEST_CASE("token ids default to the reference classes' values", "[config]") {
  Json j = emo_base();
  j["vocab_size"] = 100352;
  j.erase("pad_token_id");
  j.erase("eos_token_id");
  ModelConfig e = ModelConfig::from_json(j, "config.json");
  CHECK(e.pad_token_id == 100277);
  CHECK(e.eos_token_ids == std::vector<int64_t>{100257});
  j["model_type"] = "olmoe";
  j.erase("num_shared_experts");
  ModelConfig o = ModelConfig::from_json(j, "config.json");
  CHECK(o.pad_token_id == 1);
  CHECK(o.eos_token_ids == std::vector<int64_t>{50279});
}

TEST_CASE("OLMoE defaults are OlmoeConfig's", "[config]") {
  Json j = emo_base();
  j["model_type"] = "olmoe";
  j.erase("num_shared_experts");
  j["clip_qkv"] = 8.0;
  ModelConfig c = ModelConfig::from_json(j, "config.json");
  CHECK(c.rms_norm_eps == 1e-5);
  CHECK(c.rope_theta == 10000.0);
  CHECK(c.eos_token_ids == std::vector<int64_t>{1});
  CHECK(c.clip_qkv == 8.0);
  CHECK(c.layers()[0].num_shared_experts == 0);
}

TEST_CASE("unknown keys survive a round trip unchanged and in order", "[config]") {
  Json j = emo_base();
  j["architectures"] = {"EmoForCausalLM"};
  j["auto_map"] = {{"AutoConfig", "configuration_emo.EmoConfig"}};
  j["something_new"] = {{"nested", {1, 2, 3}}};
  ModelConfig c = ModelConfig::from_json(j, "config.json");
  Json out = c.to_json();
  CHECK(out == j);  // nothing added, nothing lost, same order
  CHECK(out.dump() == j.dump());
}

TEST_CASE("edits are written back and absent defaults are not added", "[config]") {
  ModelConfig c = ModelConfig::from_json(emo_base(), "config.json");
  c.num_experts = 4;
  c.num_experts_per_tok = 2;
  Json out = c.to_json();
  CHECK(out["num_experts"] == 4);
  CHECK(out["num_experts_per_tok"] == 2);
  CHECK_FALSE(out.contains("rms_norm_eps"));
  CHECK_FALSE(out.contains("num_experts_per_layer"));
}

TEST_CASE("per-layer expert counts resolve as EmoModel does", "[config]") {
  Json j = emo_base();
  j["num_hidden_layers"] = 3;
  j["num_experts_per_layer"] = {8, 0, 4};
  j["dense_intermediate_size"] = 64;
  ModelConfig c = ModelConfig::from_json(j, "config.json");
  auto l = c.layers();
  CHECK(l[0].num_experts == 8);
  CHECK(l[0].num_shared_experts == 1);
  CHECK(l[1].dense());
  CHECK(l[1].num_shared_experts == 0);  // min(num_shared_experts, 0)
  CHECK(l[2].num_experts == 4);
  CHECK(l[2].num_shared_experts == 1);
}

TEST_CASE("model-defining config ignores omitted defaults and bookkeeping keys", "[config]") {
  ModelConfig a = ModelConfig::from_json(emo_base(), "a");
  Json j = emo_base();
  j["rms_norm_eps"] = 1e-6;           // stated default
  j["router_aux_loss_coef"] = 0.5;    // training only
  j["architectures"] = {"EmoForCausalLM"};
  ModelConfig b = ModelConfig::from_json(j, "b");
  CHECK(canonical_json(a.model_defining()) == canonical_json(b.model_defining()));
  j["num_experts_per_tok"] = 2;       // changes the computation
  ModelConfig c = ModelConfig::from_json(j, "c");
  CHECK(canonical_json(a.model_defining()) != canonical_json(c.model_defining()));
}

TEST_CASE("missing keys, wrong types and unrunnable configs name the key", "[config][bad-input]") {
  Json j = emo_base();
  SECTION("missing required key") {
    j.erase("hidden_size");
    CHECK_THAT(error_of(j), Catch::Contains("config.json: hidden_size: missing"));
  }
  SECTION("missing model_type") {
    j.erase("model_type");
    CHECK_THAT(error_of(j), Catch::Contains("model_type"));
  }
  SECTION("unsupported model_type: the message lists the known ones") {
    j["model_type"] = "llama";
    CHECK_THAT(error_of(j), Catch::Contains("'llama' is not supported (supported: emo, olmoe, qwen3_moe, qwen2_moe, mixtral)"));
  }
  SECTION("integers beyond int64 (found by fuzz_config: the float conversion was undefined)") {
    j["hidden_size"] = 5.5e57;
    CHECK_THAT(error_of(j), Catch::Contains("hidden_size: integer 5.5e+57 is too large"));
    j["hidden_size"] = uint64_t(1) << 63;
    CHECK_THAT(error_of(j), Catch::Contains("hidden_size: integer 9223372036854775808 is too large"));
  }
  SECTION("string where an integer belongs") {
    j["num_experts"] = "8";
    CHECK_THAT(error_of(j), Catch::Contains("num_experts: expected an integer"));
  }
  SECTION("fractional integer") {
    j["hidden_size"] = 32.5;
    CHECK_THAT(error_of(j), Catch::Contains("hidden_size: expected an integer"));
  }
  SECTION("bool given as string") {
    j["norm_topk_prob"] = "false";
    CHECK_THAT(error_of(j), Catch::Contains("norm_topk_prob: expected true or false"));
  }
  SECTION("top-k larger than the experts") {
    j["num_experts_per_tok"] = 9;
    CHECK_THAT(error_of(j), Catch::Contains("num_experts_per_tok"));
  }
  SECTION("norm_topk_prob with a shared expert (NotImplementedError in the reference)") {
    j["norm_topk_prob"] = true;
    CHECK_THAT(error_of(j), Catch::Contains("norm_topk_prob"));
  }
  SECTION("per-layer list of the wrong length") {
    j["num_experts_per_layer"] = {8};
    CHECK_THAT(error_of(j), Catch::Contains("num_experts_per_layer: has 1 entries but num_hidden_layers is 2"));
  }
  SECTION("dense layer without dense_intermediate_size") {
    j["num_experts_per_layer"] = {8, 0};
    CHECK_THAT(error_of(j), Catch::Contains("dense_intermediate_size"));
  }
  SECTION("heads not dividing hidden") {
    j["num_attention_heads"] = 5;
    CHECK_THAT(error_of(j), Catch::Contains("num_attention_heads"));
  }
  SECTION("kv heads not dividing heads") {
    j["num_key_value_heads"] = 3;
    CHECK_THAT(error_of(j), Catch::Contains("num_key_value_heads"));
  }
  SECTION("always-active expert out of range") {
    j["always_active_experts"] = {9};
    CHECK_THAT(error_of(j), Catch::Contains("always_active_experts"));
  }
  SECTION("unsupported rope scaling") {
    j["rope_scaling"] = {{"rope_type", "longrope"}, {"factor", 2.0}};
    CHECK_THAT(error_of(j), Catch::Contains("rope_scaling"));
  }
  SECTION("sizes beyond any real model: refused before anything is sized from them") {
    j["vocab_size"] = int64_t(1) << 30;
    CHECK_THAT(error_of(j), Catch::Contains("config.json: vocab_size: 1073741824 is above the supported maximum"));
    j = emo_base();
    j["num_experts"] = 70000;
    CHECK_THAT(error_of(j), Catch::Contains("config.json: num_experts: 70000 is above the supported maximum"));
    j = emo_base();  // 100000 layers x 60000 experts: each bound holds, their product does not
    j["num_hidden_layers"] = 100000;
    j["num_experts"] = 60000;
    CHECK_THAT(error_of(j), Catch::Contains("experts over all layers is above the supported maximum"));
  }
}

TEST_CASE("a module's emo_module record is read strictly", "[config][bad-input]") {
  auto module_error = [](const Json& record) {
    Json j = emo_base();
    j["emo_module"] = record;
    try {
      (void)ModuleInfo::of(ModelConfig::from_json(j, "config.json"));
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  Json good = {{"parent_hash", "sha256:a"}, {"root_hash", "sha256:a"}, {"experts", {{"0", {3, 1}}}},
               {"root_experts", {{"0", {3, 1}}}}};
  CHECK(module_error(good).empty());
  Json j = emo_base();
  j["emo_module"] = good;
  CHECK(ModuleInfo::of(ModelConfig::from_json(j, "config.json"))->experts.at(0) == std::vector<int64_t>{3, 1});
  Json twice = good;
  twice["experts"]["0"] = {3, 3};
  CHECK_THAT(module_error(twice), Catch::Contains("config.json: emo_module.experts.0: expert 3 listed twice"));
  Json key = good;
  key["root_experts"] = {{"0x", {1}}};
  CHECK_THAT(module_error(key), Catch::Contains("emo_module.root_experts.0x: layer keys must be non-negative integers"));
  Json missing = good;
  missing.erase("experts");
  CHECK_THAT(module_error(missing), Catch::Contains("emo_module.experts: expected a map"));
  CHECK_THAT(module_error(Json::array()), Catch::Contains("config.json: emo_module: expected an object"));
}

TEST_CASE("config overrides (--set) parse JSON values and refuse unknown keys", "[config]") {
  ModelConfig c = ModelConfig::from_json(emo_base(), "config.json");
  c.set_override("num_hidden_layers", "4");
  CHECK(c.num_hidden_layers == 4);
  c.set_override("rope_scaling", R"({"rope_type":"linear","factor":2.0})");
  CHECK(c.rope_scaling["factor"] == 2.0);
  CHECK_THROWS_WITH(c.set_override("num_layerz", "4"), Catch::Contains("num_layerz: unknown config key"));
  CHECK_THROWS_WITH(c.set_override("num_experts_per_tok", "99"), Catch::Contains("num_experts_per_tok"));
}

// transformers v5 states RoPE as one "rope_parameters" object (it writes
// {"rope_type": "default", "rope_theta": 10000.0} even for plain RoPE).
TEST_CASE("transformers v5 rope_parameters: read, written back in its own style, contradictions refused", "[config]") {
  Json j = emo_base();
  j["rope_parameters"] = Json::parse(R"({"rope_type":"linear","factor":2.0,"rope_theta":1000000.0})");
  ModelConfig c = ModelConfig::from_json(j, "config.json");
  CHECK(c.rope_theta == 1000000.0);
  CHECK(c.rope_scaling == Json::parse(R"({"rope_type":"linear","factor":2.0})"));
  Json out = c.to_json();
  CHECK(out["rope_parameters"] == j["rope_parameters"]);
  CHECK_FALSE(out.contains("rope_scaling"));
  CHECK_FALSE(out.contains("rope_theta"));
  // The same model in v4's keys is the same model.
  Json v4 = emo_base();
  v4["rope_theta"] = 1000000.0;
  v4["rope_scaling"] = Json::parse(R"({"rope_type":"linear","factor":2.0})");
  CHECK(ModelConfig::from_json(v4, "v4.json").model_defining() == c.model_defining());
  Json plain = emo_base();
  plain["rope_parameters"] = Json::parse(R"({"rope_type":"default","rope_theta":10000.0})");
  ModelConfig d = ModelConfig::from_json(plain, "config.json");
  CHECK(d.rope_theta == 10000.0);
  CHECK(d.rope_scaling.is_null());

  Json both = j;
  both["rope_scaling"] = Json::parse(R"({"rope_type":"linear","factor":2.0})");
  CHECK_THAT(error_of(both), Catch::Contains("rope_scaling: given together with rope_parameters"));
  Json theta = j;
  theta["rope_theta"] = 10000.0;
  CHECK_THAT(error_of(theta), Catch::Contains("rope_theta: 10000 contradicts rope_parameters.rope_theta 1e+06"));
  Json per_type = emo_base();
  per_type["rope_parameters"] = Json::parse(R"({"full_attention":{"rope_type":"default","rope_theta":10000.0}})");
  CHECK_THAT(error_of(per_type), Catch::Contains("rope_parameters.full_attention: per-layer-type rope parameters"));
  Json wrong = emo_base();
  wrong["rope_parameters"] = 3;
  CHECK_THAT(error_of(wrong), Catch::Contains("rope_parameters: expected an object or null"));
}

namespace {

Json qwen3() {
  return Json::parse(R"({"model_type":"qwen3_moe","vocab_size":64,"hidden_size":32,"intermediate_size":24,
    "moe_intermediate_size":16,"num_hidden_layers":4,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":16,
    "num_experts":8,"num_experts_per_tok":2})");
}
Json qwen2() {
  Json j = qwen3();
  j["model_type"] = "qwen2_moe";
  j["shared_expert_intermediate_size"] = 20;
  return j;
}
Json mixtral() {
  return Json::parse(R"({"model_type":"mixtral","vocab_size":64,"hidden_size":32,"intermediate_size":16,
    "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"num_local_experts":8,"num_experts_per_tok":2})");
}

}  // namespace

TEST_CASE("Qwen3-MoE, Qwen2-MoE and Mixtral configs read as their transformers classes do", "[config][families]") {
  SECTION("Qwen3-MoE: expert width from moe_intermediate_size, head_dim, dense layers from mlp_only_layers and the step") {
    Json j = qwen3();
    j["mlp_only_layers"] = {0};
    j["decoder_sparse_step"] = 2;
    ModelConfig c = ModelConfig::from_json(j, "config.json");
    CHECK(c.intermediate_size == 16);
    CHECK(*c.dense_intermediate_size == 24);
    CHECK(c.resolved_head_dim() == 16);
    CHECK(c.rms_norm_eps == 1e-6);
    CHECK(c.rope_theta == 10000.0);
    CHECK(c.router_aux_loss_coef == 0.001);
    CHECK(!c.pad_token_id);
    CHECK(c.eos_token_ids.empty());
    // Qwen3MoeDecoderLayer: sparse iff l not in mlp_only_layers and (l + 1) % step == 0.
    std::vector<int64_t> experts;
    for (const auto& s : c.layers()) experts.push_back(s.num_experts);
    CHECK(experts == std::vector<int64_t>{0, 8, 0, 8});
  }
  SECTION("Qwen3-MoE: transformers v5 writes the expert count as num_local_experts; both spellings agree or fail") {
    Json j = qwen3();
    j.erase("num_experts");
    j["num_local_experts"] = 8;
    ModelConfig c = ModelConfig::from_json(j, "config.json");
    CHECK(c.num_experts == 8);
    CHECK(c.to_json().contains("num_local_experts"));
    CHECK(!c.to_json().contains("num_experts"));
    CHECK(c.model_defining() == ModelConfig::from_json(qwen3(), "config.json").model_defining());
    j["num_experts"] = 6;
    CHECK_THAT(error_of(j), Catch::Contains("num_local_experts: 8 contradicts num_experts 6"));
  }
  SECTION("Qwen3-MoE: a sliding window only with use_sliding_window") {
    Json j = qwen3();
    j["sliding_window"] = 4;
    CHECK(!ModelConfig::from_json(j, "config.json").attention_window());
    j["use_sliding_window"] = true;
    CHECK(*ModelConfig::from_json(j, "config.json").attention_window() == 4);
  }
  SECTION("Qwen2-MoE: the gated shared expert on every MoE layer, q/k/v biases by default") {
    Json j = qwen2();
    j["mlp_only_layers"] = {1};
    ModelConfig c = ModelConfig::from_json(j, "config.json");
    CHECK(c.attention_bias);
    auto specs = c.layers();
    CHECK(specs[0].gated_shared_mlp);
    CHECK(!specs[1].gated_shared_mlp);
    CHECK(specs[0].num_shared_experts == 0);  // not a router column: budgets count routed experts
  }
  SECTION("Mixtral: num_local_experts, top-k always renormalised, MixtralConfig's defaults") {
    ModelConfig c = ModelConfig::from_json(mixtral(), "config.json");
    CHECK(c.num_experts == 8);
    CHECK(c.norm_topk_prob);
    CHECK(!c.to_json().contains("norm_topk_prob"));
    CHECK(c.rms_norm_eps == 1e-5);
    CHECK(c.rope_theta == 1e6);
    CHECK(c.eos_token_ids == std::vector<int64_t>{2});
    CHECK(*c.bos_token_id == 1);
    CHECK(c.max_position_embeddings == 131072);
  }
  SECTION("--set takes the family's own keys and refuses another family's") {
    ModelConfig c = ModelConfig::from_json(qwen3(), "config.json");
    c.set_override("moe_intermediate_size", "32");
    CHECK(c.intermediate_size == 32);
    c.set_override("num_local_experts", "6");
    CHECK(c.num_experts == 6);
    CHECK_THROWS_WITH(c.set_override("num_shared_experts", "1"),
                      Catch::Contains("num_shared_experts: unknown config key for model_type qwen3_moe"));
  }
}

TEST_CASE("family configs that cannot run are refused naming the key", "[config][families][bad-input]") {
  SECTION("top-k above the experts") {
    Json j = mixtral();
    j["num_experts_per_tok"] = 9;
    CHECK_THAT(error_of(j), Catch::Contains("num_experts_per_tok: 9 exceeds the 8 experts of layer 0"));
  }
  SECTION("a missing expert width names the family's key") {
    Json j = qwen3();
    j.erase("moe_intermediate_size");
    CHECK_THAT(error_of(j), Catch::Contains("config.json: moe_intermediate_size: missing"));
  }
  SECTION("Qwen2-MoE without its shared expert's width (the shared expert gate needs a shared expert)") {
    Json j = qwen2();
    j.erase("shared_expert_intermediate_size");
    CHECK_THAT(error_of(j), Catch::Contains("shared_expert_intermediate_size: missing"));
    j["shared_expert_intermediate_size"] = 0;
    CHECK_THAT(error_of(j), Catch::Contains("shared_expert_intermediate_size: must be positive, found 0"));
  }
  SECTION("Qwen2-MoE's per-layer sliding windows are refused") {
    Json j = qwen2();
    j["use_sliding_window"] = true;
    CHECK_THAT(error_of(j), Catch::Contains("use_sliding_window: true is not supported for qwen2_moe"));
  }
  SECTION("mlp_only_layers out of range, a zero sparse step") {
    Json j = qwen3();
    j["mlp_only_layers"] = {4};
    CHECK_THAT(error_of(j), Catch::Contains("mlp_only_layers: layer 4 out of range [0, 4)"));
    j["mlp_only_layers"] = Json::array();
    j["decoder_sparse_step"] = 0;
    CHECK_THAT(error_of(j), Catch::Contains("decoder_sparse_step: must be positive, found 0"));
  }
  SECTION("a dense layer without the dense width") {
    Json j = qwen3();
    j.erase("intermediate_size");
    j["mlp_only_layers"] = {0};
    CHECK_THAT(error_of(j), Catch::Contains("intermediate_size: required (positive) when a layer is dense"));
  }
  SECTION("Mixtral without experts") {
    Json j = mixtral();
    j["num_local_experts"] = 0;
    CHECK_THAT(error_of(j), Catch::Contains("num_local_experts: must be positive, found 0"));
  }
  SECTION("a non-positive sliding window") {
    Json j = mixtral();
    j["sliding_window"] = 0;
    CHECK_THAT(error_of(j), Catch::Contains("sliding_window: must be positive or null, found 0"));
  }
}

TEST_CASE("docs/families.md shows the family rows as they are", "[config][families][docs]") {
  const std::string doc = read_text_file((emo::test::source_dir() / "docs/families.md").string());
  INFO("docs/families.md must contain, verbatim:\n" << family_tables_markdown());
  CHECK(doc.find(family_tables_markdown()) != std::string::npos);
}
