// The parts vocabulary: every canonical tensor of an EMO and of a Qwen2-MoE model belongs
// to the part its role says, EMO's shared expert columns count as shared, and the stacked
// expert rows split into routed then shared.
#include <catch2/catch.hpp>

#include <map>

#include "core/checkpoint/arch.h"
#include "core/checkpoint/parts.h"
#include "core/io/json.h"

using namespace emo;

namespace {

// Part name -> how many canonical tensors of the config belong to it.
std::map<std::string, int> count_parts(const ModelConfig& c) {
  std::map<std::string, int> counts;
  const auto specs = c.layers();
  for (const auto& t : canonical_tensors(c)) ++counts[part_name(part_of(t, specs))];
  return counts;
}

}  // namespace

TEST_CASE("every tensor of an EMO and a Qwen2-MoE model belongs to one named part", "[parts]") {
  // EMO: 2 layers, 8 experts of which 1 shared (the last), untied head.
  ModelConfig emo = ModelConfig::from_json(Json::parse(R"({"model_type": "emo", "vocab_size": 64, "hidden_size": 32,
    "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 4, "num_experts": 8,
    "num_experts_per_tok": 3, "num_shared_experts": 1, "pad_token_id": 1, "eos_token_id": 2})"), "test");
  auto e = count_parts(emo);
  CHECK(e["routed_experts"] == 2 * 7 * 3);  // layers x routed experts x gate/up/down
  CHECK(e["shared_experts"] == 2 * 1 * 3);
  CHECK(e["router"] == 2);
  CHECK(e["attention"] == 2 * 4);
  CHECK(e["norms"] == 2 * 2 + 1);  // attention and MLP norms per layer (EMO has no q/k norm), the final norm
  CHECK(e["embeddings"] == 1);
  CHECK(e["head"] == 1);
  CHECK(e.count("dense_mlp") == 0);

  // Qwen2-MoE: layer 1 dense; layer 0's shared expert MLP (3) and its gate are shared.
  ModelConfig qwen = ModelConfig::from_json(Json::parse(R"({"model_type": "qwen2_moe", "vocab_size": 64,
    "hidden_size": 32, "intermediate_size": 24, "moe_intermediate_size": 16, "shared_expert_intermediate_size": 20,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_experts": 8, "num_experts_per_tok": 2,
    "mlp_only_layers": [1]})"), "test");
  auto q = count_parts(qwen);
  CHECK(q["routed_experts"] == 8 * 3);
  CHECK(q["shared_experts"] == 3 + 1);
  CHECK(q["router"] == 1);
  CHECK(q["dense_mlp"] == 3);
  CHECK(q["attention"] == 2 * 7);  // q/k/v/o weights and q/k/v biases
}

TEST_CASE("stacked expert rows split into routed then shared, and part sets name their parts", "[parts]") {
  LayerSpec spec;
  spec.num_experts = 8, spec.num_shared_experts = 1;
  auto rows = part_rows(Role::Expert, 8, spec);
  REQUIRE(rows.size() == 2);
  CHECK((rows[0].part == Part::RoutedExperts && rows[0].begin == 0 && rows[0].end == 7));
  CHECK((rows[1].part == Part::SharedExperts && rows[1].begin == 7 && rows[1].end == 8));
  spec.num_shared_experts = 0;
  CHECK(part_rows(Role::Expert, 8, spec).size() == 1);
  auto router = part_rows(Role::Router, 8, spec);
  CHECK((router.size() == 1 && router[0].part == Part::Router && router[0].end == 8));

  CHECK(PartSet::non_moe().str() == "attention, norms, embeddings, head, dense_mlp");
  CHECK(PartSet{}.str() == "nothing");
  CHECK(PartSet::every().names().size() == moe_parts().size());
  for (size_t i = 0; i < moe_parts().size(); ++i) CHECK(size_t(moe_parts()[i].part) == i);  // part_name indexes by enum
  PartSet s{Part::Router};
  s.add(Part::RoutedExperts);
  CHECK(s.str() == "routed_experts, router");
  CHECK_FALSE(s.has(Part::SharedExperts));
}
