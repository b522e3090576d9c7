// Experts files (--experts: JSON or YAML, layer -> kept expert ids), parsed and then
// checked against a model with an MoE layer, a dense layer and a shared expert.
#include "core/checkpoint/experts.h"
#include "fuzz_util.h"

namespace {

const emo::ModelConfig& model() {
  static emo::ModelConfig c = emo::ModelConfig::from_json(
      emo::Json::parse(R"({"model_type": "emo", "vocab_size": 64, "hidden_size": 16, "intermediate_size": 8,
                           "num_hidden_layers": 3, "num_attention_heads": 2, "num_key_value_heads": 2,
                           "num_experts": 8, "num_experts_per_tok": 2, "num_shared_experts": 1,
                           "num_experts_per_layer": [8, 0, 8], "dense_intermediate_size": 16})"),
      "config.json");
  return c;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace emo;
  fuzz::expect_clean([&] {
    ExpertSelection s = ExpertSelection::load(fuzz::write_input("experts.yaml", data, size));
    s.validate(model(), "experts.yaml");
    for (const auto& [layer, ids] : s.kept) (void)s.routed_kept(model(), layer);
  });
  return 0;
}
