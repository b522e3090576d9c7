// A module emo extracts from a checkpoint transformers wrote (OLMoE, Qwen3-MoE, Qwen2-MoE,
// Mixtral) is a checkpoint of the same family that transformers loads unchanged
// (AutoModelForCausalLM.from_pretrained, nothing missing or unexpected), with its expert count
// and top-k adjusted; transformers' logits of it equal emo's full model restricted to the same
// experts (1e-4), and emo's own logits of the module equal the restricted full model (1e-5):
// the routing rule "softmax over the kept experts, top-k = min(top_k, kept)" holds per family.
#include <catch2/catch.hpp>

#include "core/checkpoint/content_hash.h"
#include "surgery/surgery_fixtures.h"
#include "test_util.h"

using namespace emo;
using namespace emo::test;

namespace {

struct FamilyCase {
  const char* type;
  const char* config;
  const char* experts_key;  // where the module's config states its expert count
  std::vector<int> moe_layers;
};

const FamilyCase kFamilies[] = {
    {"olmoe",
     R"({"vocab_size":64,"hidden_size":32,"intermediate_size":16,"num_hidden_layers":2,"num_attention_heads":4,)"
     R"("num_key_value_heads":2,"num_experts":8,"num_experts_per_tok":2,"norm_topk_prob":false})",
     "num_experts", {0, 1}},
    {"qwen3_moe",
     R"({"vocab_size":64,"hidden_size":32,"intermediate_size":24,"moe_intermediate_size":16,"num_hidden_layers":3,)"
     R"("num_attention_heads":4,"num_key_value_heads":2,"head_dim":16,"num_experts":8,"num_experts_per_tok":2,)"
     R"("mlp_only_layers":[1]})",
     "num_local_experts", {0, 2}},
    {"qwen2_moe",
     R"({"vocab_size":64,"hidden_size":32,"intermediate_size":24,"moe_intermediate_size":16,)"
     R"("shared_expert_intermediate_size":20,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,)"
     R"("num_experts":8,"num_experts_per_tok":2,"norm_topk_prob":true})",
     "num_experts", {0, 1}},
    {"mixtral",
     R"({"vocab_size":64,"hidden_size":32,"intermediate_size":16,"num_hidden_layers":2,"num_attention_heads":4,)"
     R"("num_key_value_heads":2,"num_local_experts":8,"num_experts_per_tok":2})",
     "num_local_experts", {0, 1}},
};

// The same experts per MoE layer, rotated by layer so layers differ.
ExpertSelection keep(const FamilyCase& f, std::vector<int64_t> ids) {
  ExpertSelection sel;
  for (int l : f.moe_layers) {
    sel.kept[l] = ids;
    for (auto& e : ids) e = (e + 3) % 8;
    std::sort(ids.begin(), ids.end());
  }
  return sel;
}

void check_modules_of(const FamilyCase& f, bool fused) {
  TempDir tmp;
  transformers_random(f.type, f.config, 7, tmp / "full", fused);
  Checkpoint full = Checkpoint::open(tmp / "full");
  const std::string hash = content_hash(full);
  auto ids = torch::tensor(random_examples(64, 1, 12, 3).ids[0], torch::kInt64).unsqueeze(0);
  struct Case {
    const char* name;
    std::vector<int64_t> kept;
    int64_t top_k;
  };
  const Case cases[] = {
      {"3 of 8 experts, top-2 stays", {1, 4, 6}, 2},
      {"2 of 8, as many as top-k", {3, 5}, 2},
      {"1 of 8: top-k becomes 1", {2}, 1},
  };
  int n = 0;
  for (const auto& c : cases) {
    INFO(c.name);
    ExpertSelection sel = keep(f, c.kept);
    const fs::path out = tmp / ("module" + std::to_string(n++));
    fs::create_directories(out);
    write_extract(full, plan_extract(full, sel, hash), out);
    Json config = load_json_file((out / "config.json").string());
    CHECK(config["model_type"] == f.type);
    CHECK(config[f.experts_key] == int64_t(c.kept.size()));
    CHECK(config["num_experts_per_tok"] == c.top_k);
    auto restricted = restricted_logits(tmp / "full", sel, ids);
    CHECK(max_abs_diff(logits_of(out, ids), restricted) <= 1e-5);
    auto peer = transformers_forward(out, ids);
    CHECK(max_abs_diff(peer.at("logits"), restricted) <= 1e-4);
  }
}

}  // namespace

TEST_CASE("a module emo extracts loads in transformers and equals the restricted full model, every family",
          "[surgery][extract][transformers]") {
  for (const auto& f : kFamilies) {
    INFO(f.type);
    check_modules_of(f, /*fused=*/std::string(f.type) == "mixtral" || std::string(f.type) == "qwen3_moe");
  }
}
