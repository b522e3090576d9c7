// The model against (1) the same math written token by token and expert by expert, and
// (2) the Python reference that follows allenai/EMO and transformers line by line, on
// random tiny configs with every option on; plus KV cache, left padding, packed
// documents and bad input.
#include <catch2/catch.hpp>

#include "core/model/model_fixtures.h"
#include "core/checkpoint/init.h"
#include "core/model/compat.h"
#include "core/model/naive_model.h"
#include "core/util/error.h"

using namespace emo;
using namespace emo::test;

namespace {

struct Variant {
  const char* name;
  const char* patch;
};

// Every option the issue names: shared experts, norm_topk_prob on/off, dense layers,
// per-layer expert counts, tied embeddings, always-active experts, GQA, biases, head_dim,
// q/k norm with clip_qkv, and the rope types.
const Variant kVariants[] = {
    {"emo shared expert, GQA", R"({})"},
    {"emo no shared expert, norm_topk_prob", R"({"num_shared_experts":0,"norm_topk_prob":true})"},
    {"emo no shared expert, plain top-k", R"({"num_shared_experts":0})"},
    {"emo per-layer experts with a dense layer (bias)",
     R"({"num_hidden_layers":3,"num_experts_per_layer":[8,0,6],"dense_intermediate_size":24,"dense_mlp_bias":true})"},
    {"emo per-layer shared counts", R"({"num_experts_per_layer":[8,5],"num_shared_experts_per_layer":[1,2]})"},
    {"emo always-active experts", R"({"num_shared_experts":0,"always_active_experts":[2]})"},
    {"emo tied embeddings, attention bias, head_dim", R"({"tie_word_embeddings":true,"attention_bias":true,"head_dim":12})"},
    {"emo rope linear", R"({"rope_scaling":{"rope_type":"linear","factor":2.0}})"},
    {"emo rope llama3",
     R"({"rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":16}})"},
    {"emo rope yarn", R"({"rope_scaling":{"rope_type":"yarn","factor":4.0,"original_max_position_embeddings":16}})"},
    {"olmoe q/k norm, clip_qkv, norm_topk_prob",
     R"({"model_type":"olmoe","num_shared_experts":null,"clip_qkv":0.5,"norm_topk_prob":true,"num_key_value_heads":4})"},
    {"olmoe GQA", R"({"model_type":"olmoe","num_shared_experts":null,"num_key_value_heads":2})"},
};

ModelConfig variant_config(const Variant& v) {
  Json p = parse_json(v.patch, v.name);
  if (p.contains("num_shared_experts") && p["num_shared_experts"].is_null()) {
    // OLMoE has no shared experts: drop the EMO key instead of nulling it.
    Json base = parse_json(find_preset("micro").config_json, "micro");
    p.erase("num_shared_experts");
    Json j = base;
    j.erase("num_shared_experts");
    j["vocab_size"] = 64, j["pad_token_id"] = 0, j["eos_token_id"] = 1;
    for (auto it = p.begin(); it != p.end(); ++it) j[it.key()] = it.value();
    return ModelConfig::from_json(j, v.name);
  }
  return tiny_config(v.patch);
}

torch::Tensor random_ids(int64_t B, int64_t T, int64_t V, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  return at::randint(2, V, {B, T}, gen, torch::kInt64);
}

}  // namespace

TEST_CASE("fast path equals the token-by-token model on every option", "[model]") {
  torch::NoGradGuard ng;
  for (const auto& v : kVariants) {
    INFO(v.name);
    ModelConfig c = variant_config(v);
    Model m(c, random_weights(c, 11));
    auto ids = random_ids(2, 7, c.vocab_size, 5);
    auto fast = m.forward({ids});
    auto slow = naive_logits(c, m.weights(), ids);
    CHECK(max_abs_diff(fast, slow) <= 1e-5);
    CHECK(fast.abs().max().item<double>() > 0.1);  // not trivially zero
  }
}

TEST_CASE("fast path equals the Python reference (allenai/EMO, transformers) on every option", "[model][reference]") {
  torch::NoGradGuard ng;
  for (const auto& v : kVariants) {
    INFO(v.name);
    ModelConfig c = variant_config(v);
    TempDir tmp;
    ModelWeights w = random_weights(c, 21);
    save_checkpoint(c, w, tmp / "m");
    Model m = Model::load(Checkpoint::open(tmp / "m"));
    auto ids = random_ids(2, 9, c.vocab_size, 6);
    ReferenceRun ref = run_reference(tmp / "m", ids, {}, "--router");
    RouterTrace trace;
    trace.keep_routing = true;
    ForwardOptions o;
    o.trace = &trace;
    auto ours = m.forward({ids}, o);
    CHECK(max_abs_diff(ours, ref.logits) <= 1e-5);
    for (size_t l = 0; l < m.layers().size(); ++l) {
      if (m.layers()[l].dense()) continue;
      std::string s = std::to_string(l);
      CHECK(max_abs_diff(trace.logits[l], ref.all.at("router_logits." + s)) <= 1e-5);
      CHECK(torch::equal(trace.ids[l], ref.all.at("topk_ids." + s)));
      CHECK(max_abs_diff(trace.weights[l], ref.all.at("topk_weights." + s)) <= 1e-6);
    }
  }
}

TEST_CASE("a restricted full model equals the naive model restricted the same way", "[model]") {
  torch::NoGradGuard ng;
  for (const char* patch : {"{}", R"({"num_shared_experts":0,"norm_topk_prob":true})", R"({"num_shared_experts":0,"always_active_experts":[2]})"}) {
    INFO(patch);
    ModelConfig c = tiny_config(patch);
    Model m(c, random_weights(c, 3));
    // Layer 0 keeps experts {1, 4} (plus any shared/always-active), fewer than top-k;
    // layer 1 keeps five.
    std::vector<std::vector<bool>> allowed = {{false, true, false, false, true, false, false, true},
                                              {true, true, false, true, true, false, true, true}};
    if (c.num_shared_experts == 0) allowed[0][7] = false;
    RoutingControl rc;
    for (auto& a : allowed) {
      auto t = torch::zeros({int64_t(a.size())}, torch::kBool);
      for (size_t i = 0; i < a.size(); ++i) t[int64_t(i)] = bool(a[i]);
      rc.allowed.push_back(t);
    }
    ForwardOptions o;
    o.routing = &rc;
    auto ids = random_ids(2, 6, c.vocab_size, 9);
    CHECK(max_abs_diff(m.forward({ids}, o), naive_logits(c, m.weights(), ids, allowed)) <= 1e-5);
  }
}

TEST_CASE("KV-cache decoding equals full recomputation, step by step", "[model]") {
  torch::NoGradGuard ng;
  for (const char* patch : {"{}", R"({"model_type":"emo","attention_bias":true})"}) {
    ModelConfig c = tiny_config(patch);
    Model m(c, random_weights(c, 4));
    auto ids = random_ids(2, 10, c.vocab_size, 1);
    auto full = m.forward({ids});
    KVCache cache;
    ForwardOptions o;
    o.cache = &cache;
    auto first = m.forward({ids.narrow(1, 0, 4)}, o);
    CHECK(max_abs_diff(first, full.narrow(1, 0, 4)) <= 1e-5);
    for (int64_t t = 4; t < 10; ++t) {
      auto step = m.forward({ids.narrow(1, t, 1)}, o);
      CHECK(max_abs_diff(step, full.narrow(1, t, 1)) <= 1e-5);
    }
    CHECK(cache.length() == 10);
  }
}

TEST_CASE("left-padded batches give each row's own logits, cached or not", "[model]") {
  torch::NoGradGuard ng;
  ModelConfig c = tiny_config();
  Model m(c, random_weights(c, 8));
  auto a = random_ids(1, 7, c.vocab_size, 2), b = random_ids(1, 4, c.vocab_size, 3);
  auto ids = torch::cat({a, torch::cat({torch::zeros({1, 3}, torch::kInt64), b}, 1)}, 0);
  auto mask = torch::ones({2, 7}, torch::kInt64);
  mask[1].narrow(0, 0, 3).zero_();
  auto batched = m.forward({ids, mask});
  CHECK(max_abs_diff(batched[0], m.forward({a})[0]) <= 1e-5);
  CHECK(max_abs_diff(batched[1].narrow(0, 3, 4), m.forward({b})[0]) <= 1e-5);
  // The reference, with HF generate()'s position ids and eager mask.
  TempDir tmp;
  save_checkpoint(c, m.weights(), tmp / "m");
  ReferenceRun ref = run_reference(tmp / "m", ids, mask);
  CHECK(max_abs_diff(batched[0], ref.logits[0]) <= 1e-5);
  CHECK(max_abs_diff(batched[1].narrow(0, 3, 4), ref.logits[1].narrow(0, 3, 4)) <= 1e-5);
  // Continue both rows with the cache: still each row's own numbers.
  KVCache cache;
  ForwardOptions o;
  o.cache = &cache;
  m.forward({ids, mask}, o);
  auto next = random_ids(2, 1, c.vocab_size, 4);
  auto step = m.forward({next}, o);
  auto a2 = torch::cat({a, next.narrow(0, 0, 1)}, 1), b2 = torch::cat({b, next.narrow(0, 1, 1)}, 1);
  CHECK(max_abs_diff(step[0][0], m.forward({a2})[0][7]) <= 1e-5);
  CHECK(max_abs_diff(step[1][0], m.forward({b2})[0][4]) <= 1e-5);
}

TEST_CASE("packed documents see only themselves, with positions from zero", "[model]") {
  torch::NoGradGuard ng;
  ModelConfig c = tiny_config();
  Model m(c, random_weights(c, 6));
  auto a = random_ids(1, 5, c.vocab_size, 7), b = random_ids(1, 3, c.vocab_size, 8);
  auto packed = torch::cat({a, b}, 1);
  auto docs = torch::tensor({{0, 0, 0, 0, 0, 1, 1, 1}}, torch::kInt64);
  Batch batch{packed};
  batch.document_ids = docs;
  auto out = m.forward(batch);
  CHECK(max_abs_diff(out[0].narrow(0, 0, 5), m.forward({a})[0]) <= 1e-5);
  CHECK(max_abs_diff(out[0].narrow(0, 5, 3), m.forward({b})[0]) <= 1e-5);
}

TEST_CASE("the mask-loop baseline, sorted and grouped dispatch agree, forward and backward", "[model]") {
  ModelConfig c = tiny_config();
  std::vector<Dispatch> modes = {Dispatch::Sorted};
  if (compat::kHaveGroupedMM) {
    modes.push_back(Dispatch::Grouped);  // at::_grouped_mm; on the CPU its composite form
  } else {
    Model m(c, random_weights(c, 9));
    ForwardOptions grouped;
    grouped.dispatch = Dispatch::Grouped;
    CHECK_THROWS_WITH(m.forward({random_ids(1, 4, c.vocab_size, 1)}, grouped),
                      Catch::Contains("has no grouped matrix multiply (2.9 and later)"));
  }
  for (Dispatch mode : modes) {
    INFO((mode == Dispatch::Grouped ? "grouped" : "sorted"));
    ModelWeights w1 = random_weights(c, 9), w2 = random_weights(c, 9);
    for (auto* w : {&w1, &w2})
      for (auto& p : named_params(*w, c)) p.tensor->requires_grad_(true);
    Model m1(c, w1), m2(c, w2);
    auto ids = random_ids(2, 8, c.vocab_size, 10);
    ForwardOptions ours, loop;
    ours.dispatch = mode;
    loop.dispatch = Dispatch::MaskLoop;
    auto l1 = m1.forward({ids}, ours), l2 = m2.forward({ids}, loop);
    CHECK(max_abs_diff(l1, l2) <= 1e-5);
    (l1.pow(2).mean()).backward();
    (l2.pow(2).mean()).backward();
    auto p1 = named_params(m1.weights(), c), p2 = named_params(m2.weights(), c);
    for (size_t i = 0; i < p1.size(); ++i) {
      INFO(p1[i].name);
      REQUIRE(p1[i].tensor->grad().defined());
      CHECK(max_abs_diff(p1[i].tensor->grad(), p2[i].tensor->grad()) <= 1e-6);
    }
  }
}

TEST_CASE("bad input is a clear error, not a crash", "[model][bad-input]") {
  torch::NoGradGuard ng;
  ModelConfig c = tiny_config(R"({"max_position_embeddings":16})");
  Model m(c, random_weights(c, 1));
  CHECK_THROWS_WITH(m.forward({torch::tensor({{1, 2, 64}}, torch::kInt64)}),
                    Catch::Contains("token id 64 out of range for vocab_size 64"));
  CHECK_THROWS_WITH(m.forward({torch::tensor({{1, -3}}, torch::kInt64)}), Catch::Contains("token id -3 out of range"));
  CHECK_THROWS_WITH(m.forward({torch::ones({1, 17}, torch::kInt64)}),
                    Catch::Contains("17 tokens is longer than the model's context (max_position_embeddings 16)"));
}
