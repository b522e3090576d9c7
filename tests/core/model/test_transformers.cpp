// emo's model against Hugging Face transformers' own OlmoeForCausalLM (the pinned PyPI
// version, tests/reference/hf_peer.py): random small configs written by transformers'
// save_pretrained in both expert layouts it reads and writes, read by emo, and emo's own
// rewrites of them read back by transformers. Logits and router logits agree within 1e-4
// (fp32); in practice they agree to ~1e-6.
#include <catch2/catch.hpp>

#include "core/checkpoint/convert.h"
#include "core/model/model_fixtures.h"

using namespace emo;
using namespace emo::test;

namespace {

// transformers' OlmoeConfig keys: the class defaults, shrunk, with each variant on top.
constexpr const char* kOlmoeBase =
    R"({"vocab_size":64,"hidden_size":32,"intermediate_size":16,"num_hidden_layers":2,"num_attention_heads":4,)"
    R"("num_key_value_heads":4,"num_experts":8,"num_experts_per_tok":2,"max_position_embeddings":64})";

struct Variant {
  const char* name;
  const char* patch;
};
const Variant kOlmoeVariants[] = {
    {"plain top-2 of 8", "{}"},
    {"norm_topk_prob, clip_qkv", R"({"norm_topk_prob":true,"clip_qkv":0.5})"},
    {"GQA, three layers, top-3", R"({"num_key_value_heads":2,"num_hidden_layers":3,"num_experts_per_tok":3})"},
    {"linear rope scaling", R"({"rope_parameters":{"rope_type":"linear","factor":2.0,"rope_theta":10000.0}})"},
};

std::string with_patch(const char* base, const char* patch) {
  Json j = parse_json(base, "base");
  Json p = parse_json(patch, "patch");
  for (auto it = p.begin(); it != p.end(); ++it) j[it.key()] = it.value();
  return j.dump();
}

torch::Tensor random_ids(int64_t B, int64_t T, int64_t V, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  return at::randint(2, V, {B, T}, gen, torch::kInt64);
}

// emo's logits and router logits for `dir`.
std::pair<torch::Tensor, RouterTrace> emo_forward(const fs::path& dir, const torch::Tensor& ids) {
  torch::NoGradGuard ng;
  Model m = Model::load(Checkpoint::open(dir));
  RouterTrace trace;
  ForwardOptions o;
  o.trace = &trace;
  torch::Tensor logits = m.forward({ids}, o);
  return {logits, std::move(trace)};
}

void check_same(const fs::path& dir, const std::map<std::string, torch::Tensor>& peer, const torch::Tensor& ids) {
  auto [logits, trace] = emo_forward(dir, ids);
  CHECK(max_abs_diff(logits, peer.at("logits")) <= 1e-4);
  CHECK(peer.at("logits").abs().max().item<double>() > 0.5);  // not trivially small
  // transformers records router logits for the MoE layers only, in layer order.
  size_t moe = 0;
  for (size_t l = 0; l < trace.logits.size(); ++l) {
    if (!trace.logits[l].defined()) continue;
    INFO("router logits of layer " << l);
    CHECK(max_abs_diff(trace.logits[l], peer.at("router_logits." + std::to_string(moe++))) <= 1e-4);
  }
  CHECK(peer.size() == moe + 1);  // logits + one router_logits.{i} per MoE layer
}

// transformers writes both layouts of a random `type` model and emo reads both; emo writes
// both and transformers reads them back.
void check_family(const char* type, const std::string& config, uint64_t seed, int64_t vocab) {
  TempDir tmp;
  auto ids = random_ids(2, 11, vocab, seed);
  transformers_random(type, config, seed, tmp / "hf-per-expert");
  transformers_random(type, config, seed, tmp / "hf-fused", /*fused=*/true);
  REQUIRE(Checkpoint::open(tmp / "hf-per-expert").layout() == ExpertLayout::PerExpert);
  REQUIRE(Checkpoint::open(tmp / "hf-fused").layout() == ExpertLayout::Fused);
  REQUIRE(Checkpoint::open(tmp / "hf-fused").config().model_type() == type);
  auto peer = transformers_forward(tmp / "hf-per-expert", ids, /*router=*/true);
  check_same(tmp / "hf-per-expert", peer, ids);
  check_same(tmp / "hf-fused", peer, ids);
  for (ExpertLayout layout : {ExpertLayout::PerExpert, ExpertLayout::Fused}) {
    const fs::path out = tmp / (layout == ExpertLayout::Fused ? "emo-fused" : "emo-per-expert");
    ConvertOptions o;
    o.layout = layout;
    fs::create_directories(out);
    convert_checkpoint(Checkpoint::open(tmp / (layout == ExpertLayout::Fused ? "hf-per-expert" : "hf-fused")), out, o);
    auto back = transformers_forward(out, ids, /*router=*/true);
    CHECK(max_abs_diff(back.at("logits"), peer.at("logits")) <= 1e-6);  // the same tensors, laid out otherwise
  }
}

// Each family's config class keys, shrunk; variants cover its traits.
constexpr const char* kQwen3Base =
    R"({"vocab_size":64,"hidden_size":32,"intermediate_size":24,"moe_intermediate_size":16,"num_hidden_layers":2,)"
    R"("num_attention_heads":4,"num_key_value_heads":2,"head_dim":16,"num_experts":8,"num_experts_per_tok":2,)"
    R"("max_position_embeddings":64})";
const Variant kQwen3Variants[] = {
    {"plain top-2 of 8, head_dim 16 (not hidden/heads)", "{}"},
    {"norm_topk_prob, a dense layer (mlp_only_layers), three layers",
     R"({"norm_topk_prob":true,"mlp_only_layers":[1],"num_hidden_layers":3})"},
    {"decoder_sparse_step 2, attention biases", R"({"decoder_sparse_step":2,"num_hidden_layers":4,"attention_bias":true})"},
    {"sliding window of 4 tokens, top-3", R"({"use_sliding_window":true,"sliding_window":4,"num_experts_per_tok":3})"},
};
constexpr const char* kQwen2Base =
    R"({"vocab_size":64,"hidden_size":32,"intermediate_size":24,"moe_intermediate_size":16,)"
    R"("shared_expert_intermediate_size":20,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,)"
    R"("num_experts":8,"num_experts_per_tok":2,"max_position_embeddings":64})";
const Variant kQwen2Variants[] = {
    {"shared expert behind its gate, q/k/v biases", "{}"},
    {"a dense first layer, norm_topk_prob, no biases",
     R"({"mlp_only_layers":[0],"norm_topk_prob":true,"qkv_bias":false,"num_hidden_layers":3})"},
};
constexpr const char* kMixtralBase =
    R"({"vocab_size":64,"hidden_size":32,"intermediate_size":16,"num_hidden_layers":2,"num_attention_heads":4,)"
    R"("num_key_value_heads":2,"num_local_experts":8,"num_experts_per_tok":2,"max_position_embeddings":64})";
const Variant kMixtralVariants[] = {
    {"top-2 of 8, renormalised", "{}"},
    {"top-3, sliding window of 5, head_dim 16", R"({"num_experts_per_tok":3,"sliding_window":5,"head_dim":16})"},
};

}  // namespace

// Every variant of a family against transformers, each with its own seed.
template <size_t N>
void check_variants(const char* type, const char* base, const Variant (&variants)[N], uint64_t seed) {
  for (const auto& v : variants) {
    INFO(type << ": " << v.name);
    check_family(type, with_patch(base, v.patch), seed++, 64);
  }
}

TEST_CASE("OLMoE: emo's logits equal transformers' OlmoeForCausalLM, both expert layouts, both ways",
          "[model][transformers]") {
  check_variants("olmoe", kOlmoeBase, kOlmoeVariants, 1);
}

TEST_CASE("Qwen3-MoE: emo's logits equal transformers' Qwen3MoeForCausalLM, both expert layouts, both ways",
          "[model][transformers]") {
  check_variants("qwen3_moe", kQwen3Base, kQwen3Variants, 11);
}

TEST_CASE("Qwen2-MoE: emo's logits equal transformers' Qwen2MoeForCausalLM, both expert layouts, both ways",
          "[model][transformers]") {
  check_variants("qwen2_moe", kQwen2Base, kQwen2Variants, 21);
}

TEST_CASE("Mixtral: emo's logits equal transformers' MixtralForCausalLM, both expert layouts, both ways",
          "[model][transformers]") {
  check_variants("mixtral", kMixtralBase, kMixtralVariants, 31);
}
