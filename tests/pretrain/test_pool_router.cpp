// EMO's document-pool router: pools per document piece, masked experts at exactly zero
// weight, per-token routing when the pool holds every expert, reproducible draws.
#include <catch2/catch.hpp>

#include <set>

#include "core/model/model.h"
#include "core/model/moe.h"
#include "finetune/losses.h"
#include "core/model/pool_router.h"

using namespace emo;

namespace {

ModelConfig small_emo() {
  // 8 experts: 7 routed + 1 shared, top-3 (2 routed + the shared one).
  return ModelConfig::from_json(Json::parse(R"({"model_type": "emo", "vocab_size": 64, "hidden_size": 32,
    "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 4, "num_experts": 8,
    "num_experts_per_tok": 3, "num_shared_experts": 1, "pad_token_id": 1, "eos_token_id": 2,
    "max_position_embeddings": 64})"), "test");
}

std::set<int64_t> top_set(const torch::Tensor& scores, int64_t k) {
  auto idx = std::get<1>(scores.topk(k));
  std::set<int64_t> s;
  for (int64_t i = 0; i < k; ++i) s.insert(idx[i].item<int64_t>());
  return s;
}

std::set<int64_t> allowed_set(const torch::Tensor& mask_row) {
  std::set<int64_t> s;
  for (int64_t e = 0; e < mask_row.size(0); ++e)
    if (mask_row[e].item<float>() == 0.0f) s.insert(e);
  return s;
}

// A forward pass of `model` (small_emo) over two rows of 16 random tokens whose documents are
// `row_docs` (row 1's ids offset by 10), with the pools of `router`, into `trace`.
void pooled_forward(Model& model, const DocumentPoolRouter& router, const std::vector<int64_t>& row_docs,
                    uint64_t seed, RouterTrace& trace) {
  torch::manual_seed(seed);
  auto ids = torch::randint(3, 64, {2, 16}, torch::kInt64);
  auto docs = torch::tensor(row_docs).repeat({2, 1}) + torch::tensor({0, 10}).view({2, 1});
  ForwardOptions fo;
  fo.routing = &router.control();
  fo.trace = &trace;
  torch::NoGradGuard no_grad;
  model.hidden_states(Batch{ids, {}, {}, docs}, fo);
}

}  // namespace

TEST_CASE("pools are per document piece inside a packed batch", "[pretrain][pool]") {
  torch::manual_seed(3);
  const int64_t R = 10, T = 12;
  // Row 0: documents 5 | 6 | 7; row 1 continues document 7, then 8. Document 7's two
  // pieces are separate pieces with pools of their own.
  auto docs = torch::tensor({5, 5, 5, 5, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 8, 8, 8, 8, 8, 8, 8, 8, 8}).view({2, T});
  auto logits = torch::randn({2 * T, R});
  std::map<int64_t, int64_t> size_of = {{5, 3}, {6, 5}, {7, 4}, {8, 10}};  // 8: the whole pool, unmasked
  auto mask = document_pool_mask(logits, docs, 2, [&](int64_t d) { return size_of.at(d); });
  REQUIRE(mask.defined());
  REQUIRE(mask.sizes() == torch::IntArrayRef({2 * T, R}));
  auto probs = torch::softmax(logits, 1);
  struct Piece {
    int64_t begin, end, doc;
  };
  std::vector<Piece> pieces = {{0, 4, 5}, {4, 9, 6}, {9, 12, 7}, {12, 15, 7}, {15, 24, 8}};
  for (const auto& p : pieces) {
    INFO("piece [" << p.begin << ", " << p.end << ") of document " << p.doc);
    auto expected = top_set(probs.narrow(0, p.begin, p.end - p.begin).sum(0), size_of.at(p.doc));
    for (int64_t t = p.begin; t < p.end; ++t) CHECK(allowed_set(mask[t]) == expected);
  }
  // The two pieces of document 7 rank the experts on their own tokens.
  auto a = top_set(probs.narrow(0, 9, 3).sum(0), 4), b = top_set(probs.narrow(0, 12, 3).sum(0), 4);
  CHECK(allowed_set(mask[9]) == a);
  CHECK(allowed_set(mask[12]) == b);
  // Only 0 and -inf.
  CHECK((mask.eq(0) | mask.isinf()).all().item<bool>());
  // Every piece keeping all experts: nothing to mask.
  CHECK_FALSE(document_pool_mask(logits, docs, 2, [](int64_t) { return int64_t(10); }).defined());
}

TEST_CASE("masked experts get exactly zero routing weight and routed picks stay in the pool", "[pretrain][pool]") {
  ModelConfig c = small_emo();
  Model model(c, init_weights(c, 7, {}));
  DocumentPoolRouter router(c, {2, 3}, 11);
  router.set_step(4);
  RouterTrace trace;
  trace.keep_routing = true;
  pooled_forward(model, router, {0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2}, 1, trace);
  const auto specs = c.layers();
  for (size_t l = 0; l < specs.size(); ++l) {
    INFO("layer " << l);
    const auto& logits = trace.logits[l];  // the pooled logits
    auto p = routing_probabilities(logits, specs[l]);
    auto masked = logits.narrow(1, 0, 7).isinf();
    // Each token's pool holds 2 or 3 routed experts (its document's draw).
    auto in_pool = masked.logical_not().sum(1);
    CHECK(((in_pool >= 2) & (in_pool <= 3)).all().item<bool>());
    CHECK((p.narrow(1, 0, 7).masked_select(masked) == 0).all().item<bool>());
    // The chosen routed experts are in the pool with positive weight; the shared one has 1.
    auto routed_ids = trace.ids[l].narrow(1, 0, 2), routed_w = trace.weights[l].narrow(1, 0, 2);
    CHECK_FALSE(masked.gather(1, routed_ids).any().item<bool>());
    CHECK((routed_w > 0).all().item<bool>());
    CHECK((trace.ids[l].narrow(1, 2, 1) == 7).all().item<bool>());
    CHECK((trace.weights[l].narrow(1, 2, 1) == 1).all().item<bool>());
    // Tokens of one piece share one pool.
    for (int64_t row = 0; row < 2; ++row)
      for (auto [b, e] : std::vector<std::pair<int64_t, int64_t>>{{0, 5}, {5, 12}, {12, 16}})
        for (int64_t t = b + 1; t < e; ++t)
          CHECK(masked[row * 16 + t].equal(masked[row * 16 + b]));
  }
}

TEST_CASE("unpooled balancing: counts of the pooled routing, probabilities of the logits before the mask",
          "[pretrain][pool]") {
  ModelConfig c = small_emo();
  Model model(c, init_weights(c, 7, {}));
  DocumentPoolRouter router(c, {2, 3}, 11);
  RouterTrace trace;
  trace.keep_unpooled_logits = true;
  pooled_forward(model, router, {0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, 2, trace);
  const auto layers = lb_layers(c);
  auto all = torch::ones({32}, torch::kBool);
  auto pooled = router_stats(layers, trace.logits, all, true);
  auto unpooled = router_stats(layers, trace.logits, all, true, &trace.unpooled_logits);
  for (const LbLayer& L : layers) {
    INFO("layer " << L.layer);
    const auto& raw = trace.unpooled_logits[size_t(L.layer)];
    const auto& masked = trace.logits[size_t(L.layer)];
    REQUIRE(raw.defined());
    // The pooled logits are the raw ones with -inf outside the pool, and some are masked.
    auto out = masked.isinf();
    CHECK(out.any().item<bool>());
    CHECK(masked.masked_select(out.logical_not()).equal(raw.masked_select(out.logical_not())));
    const size_t i = size_t(&L - layers.data());
    // Counts: what routing chose, either way. Probabilities: the raw softmax, routed columns.
    CHECK(unpooled.counts[i].equal(pooled.counts[i]));
    auto expected = torch::softmax(raw.narrow(1, 0, 7), 1).sum(0);
    CHECK(torch::allclose(unpooled.probs[i], expected, 1e-6, 1e-6));
    CHECK_FALSE(torch::allclose(pooled.probs[i], expected, 1e-3, 1e-3));
    // Pooled probabilities are zero outside every token's pool.
    CHECK((torch::softmax(masked.narrow(1, 0, 7), 1).masked_select(out.narrow(1, 0, 7)) == 0).all().item<bool>());
  }
  // z-loss stays on the pooled logits (the reference's).
  CHECK(unpooled.z_sum.item<float>() == pooled.z_sum.item<float>());
}

TEST_CASE("unpooled gate weights (--gate-probs unpooled): the pooled routing's choice, the unpooled softmax's weights", "[pretrain][pool]") {
  ModelConfig c = small_emo();
  Model model(c, init_weights(c, 7, {}));
  const std::vector<int64_t> docs = {0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2};
  DocumentPoolRouter pooled_router(c, {2, 3}, 11);
  DocumentPoolRouter unpooled_router(c, {2, 3, 0, true}, 11);
  RouterTrace pooled, unpooled;
  pooled.keep_routing = unpooled.keep_routing = true;
  unpooled.keep_unpooled_logits = true;
  pooled_forward(model, pooled_router, docs, 1, pooled);
  pooled_forward(model, unpooled_router, docs, 1, unpooled);
  const size_t l = 0;  // the first MoE layer: the one both runs reach with equal hidden states
  // The same pools and the same chosen experts; the router losses see the same pooled logits.
  CHECK(torch::equal(unpooled.ids[l], pooled.ids[l]));
  CHECK(torch::equal(unpooled.logits[l], pooled.logits[l]));
  // Routed weights: the softmax over every routed expert at the chosen ones, which sum to
  // less than inside the pool wherever the pool left some probability out.
  const auto& raw = unpooled.unpooled_logits[l];
  auto routed_ids = unpooled.ids[l].narrow(1, 0, 2);
  auto expected = torch::softmax(raw.narrow(1, 0, 7), 1).gather(1, routed_ids);
  CHECK(torch::allclose(unpooled.weights[l].narrow(1, 0, 2), expected, 1e-6, 0));
  auto w_pooled = pooled.weights[l].narrow(1, 0, 2).sum(1), w_unpooled = unpooled.weights[l].narrow(1, 0, 2).sum(1);
  CHECK((w_unpooled < w_pooled).all().item<bool>());
  CHECK((unpooled.weights[l].narrow(1, 2, 1) == 1).all().item<bool>());  // the shared expert
}

TEST_CASE("a pool of every routed expert routes exactly as the standard router", "[pretrain][pool]") {
  ModelConfig c = small_emo();
  Model model(c, init_weights(c, 9, {}));
  DocumentPoolRouter router(c, {7, 7}, 1);
  torch::manual_seed(2);
  auto ids = torch::randint(3, 64, {2, 12}, torch::kInt64);
  auto docs = torch::tensor({0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2}).repeat({2, 1});
  ForwardOptions pooled;
  pooled.routing = &router.control();
  auto a = model.forward(Batch{ids, {}, {}, docs}, pooled);
  auto b = model.forward(Batch{ids, {}, {}, docs});
  CHECK(torch::equal(a, b));
}

TEST_CASE("pool sizes: uniform in the range, a pure function of (seed, step, document, layer)", "[pretrain][pool]") {
  PoolRange r{3, 31};
  std::map<int64_t, int> seen;
  for (int64_t d = 0; d < 4000; ++d) {
    int64_t s = draw_pool_size(5, 17, d, 2, r);
    REQUIRE(s >= 3);
    REQUIRE(s <= 31);
    ++seen[s];
    CHECK(s == draw_pool_size(5, 17, d, 2, r));
  }
  CHECK(seen.size() == 29);  // every size drawn
  for (const auto& [s, n] : seen) CHECK((n > 70 && n < 210));  // ~138 each
  // Another step, layer or seed draws anew.
  int differ = 0;
  for (int64_t d = 0; d < 100; ++d)
    differ += draw_pool_size(5, 17, d, 2, r) != draw_pool_size(5, 18, d, 2, r);
  CHECK(differ > 80);
  // Defaults scale EMO's 8..128 of 127 routed experts: tiny's 31 routed, top-3 routed.
  ModelConfig c = small_emo();
  CHECK(default_pool_range(c).min == 2);
  CHECK(default_pool_range(c).max == 7);
  CHECK_THROWS(validate_pool_range(c, {1, 7}));  // below the routed top-k
}

TEST_CASE("a --pool-free fraction of documents routes with no pool, in every layer alike", "[pretrain][pool]") {
  const PoolRange pooled{3, 31};
  PoolRange r = pooled;
  r.free = 0.25;
  int free = 0;
  for (int64_t d = 0; d < 4000; ++d) {
    const int64_t s = draw_pool_size(5, 17, d, 0, r);
    if (s == kNoPool) {
      ++free;
      for (int layer = 1; layer < 4; ++layer) REQUIRE(draw_pool_size(5, 17, d, layer, r) == kNoPool);
    } else {
      // A document with a pool draws the size it draws with no free fraction.
      for (int layer = 0; layer < 4; ++layer)
        REQUIRE(draw_pool_size(5, 17, d, layer, r) == draw_pool_size(5, 17, d, layer, pooled));
    }
  }
  CHECK((free > 900 && free < 1100));  // ~1000
  // Another step frees other documents.
  int differ = 0;
  for (int64_t d = 0; d < 400; ++d)
    differ += (draw_pool_size(5, 17, d, 0, r) == kNoPool) != (draw_pool_size(5, 18, d, 0, r) == kNoPool);
  CHECK(differ > 100);  // ~150 (2 * 0.25 * 0.75 of 400)

  // A free document's tokens are masked nowhere; the others keep their pools.
  ModelConfig c = small_emo();
  r = {2, 2, 0.5};
  Model model(c, init_weights(c, 9, {}));
  DocumentPoolRouter router(c, r, 1);
  torch::manual_seed(4);
  auto logits = torch::randn({12, 8});
  auto docs = torch::tensor({0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3}).view({1, 12});
  auto mask = router.control().pool(1, logits, docs);
  REQUIRE(mask.defined());
  int free_docs = 0;
  for (int64_t doc = 0; doc < 4; ++doc) {
    const bool is_free = draw_pool_size(1, 0, doc, 1, r) == kNoPool;
    free_docs += is_free;
    for (int64_t t = 3 * doc; t < 3 * doc + 3; ++t) CHECK(allowed_set(mask[t]).size() == (is_free ? 8u : 3u));
  }
  CHECK((free_docs > 0 && free_docs < 4));  // both kinds are in the batch
  CHECK_THROWS_WITH(DocumentPoolRouter(c, {2, 7, 1.0}, 1), Catch::Contains("--pool-free"));
  CHECK_THROWS_WITH(DocumentPoolRouter(c, {2, 7, -0.1}, 1), Catch::Contains("--pool-free"));
}
