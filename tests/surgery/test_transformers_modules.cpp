// A module emo extracts from an OLMoE that transformers wrote is a checkpoint transformers
// loads unchanged (AutoModelForCausalLM.from_pretrained, nothing missing or unexpected), and
// transformers' logits of it equal emo's full model restricted to the same experts (1e-4).
#include <catch2/catch.hpp>

#include "core/checkpoint/content_hash.h"
#include "surgery/surgery_fixtures.h"
#include "test_util.h"

using namespace emo;
using namespace emo::test;

TEST_CASE("an OLMoE module emo extracts loads in transformers and equals the restricted full model",
          "[surgery][extract][transformers]") {
  TempDir tmp;
  transformers_random("olmoe",
                      R"({"vocab_size":64,"hidden_size":32,"intermediate_size":16,"num_hidden_layers":2,)"
                      R"("num_attention_heads":4,"num_key_value_heads":2,"num_experts":8,"num_experts_per_tok":2,)"
                      R"("norm_topk_prob":false})",
                      7, tmp / "full");
  Checkpoint full = Checkpoint::open(tmp / "full");
  const std::string hash = content_hash(full);
  auto ids = torch::tensor(random_examples(64, 1, 12, 3).ids[0], torch::kInt64).unsqueeze(0);
  struct Case {
    const char* name;
    std::map<int, std::vector<int64_t>> kept;
    int64_t top_k;
  };
  const Case cases[] = {
      {"3 of 8 experts, top-2 stays", {{0, {1, 4, 6}}, {1, {0, 2, 7}}}, 2},
      {"2 of 8, as many as top-k", {{0, {3, 5}}, {1, {1, 6}}}, 2},
      {"1 of 8: top-k becomes 1", {{0, {2}}, {1, {5}}}, 1},
  };
  int n = 0;
  for (const auto& c : cases) {
    INFO(c.name);
    ExpertSelection sel;
    sel.kept = c.kept;
    const fs::path out = tmp / ("module" + std::to_string(n++));
    fs::create_directories(out);
    write_extract(full, plan_extract(full, sel, hash), out);
    Json config = load_json_file((out / "config.json").string());
    CHECK(config["model_type"] == "olmoe");
    CHECK(config["num_experts"] == int64_t(c.kept.begin()->second.size()));
    CHECK(config["num_experts_per_tok"] == c.top_k);
    auto peer = transformers_forward(out, ids);
    CHECK(max_abs_diff(peer.at("logits"), restricted_logits(tmp / "full", sel, ids)) <= 1e-4);
    CHECK(max_abs_diff(peer.at("logits"), logits_of(out, ids)) <= 1e-4);
  }
}
