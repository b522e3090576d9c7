// The training losses against torch and against the Python transcription of allenai/EMO
// (load_balancing_loss_func_olmoe) and transformers (Mixtral's loss for OLMoE); the
// global-batch split; activation checkpointing.
#include <catch2/catch.hpp>

#include "core/io/safetensors.h"
#include "core/model/model.h"
#include "core/model/tensor_bridge.h"
#include "finetune/freeze.h"
#include "finetune/losses.h"
#include "ft_util.h"

using namespace emo;
using namespace emo::test;

namespace {

fs::path reference_model(const fs::path& dir, const std::string& preset) {
  fs::path out = dir / preset;
  std::string cmd = reference_script("make_random.py") + " --out " +
                    out.string() + " --preset " + preset + " --seed 3 > /dev/null";
  if (std::system(cmd.c_str()) != 0) throw std::runtime_error("make_random.py failed");
  return out;
}

std::string matrix_text(const torch::Tensor& m) {
  std::string s;
  for (int64_t r = 0; r < m.size(0); ++r) {
    if (r) s += ";";
    for (int64_t c = 0; c < m.size(1); ++c) s += (c ? "," : "") + std::to_string(m[r][c].item<int64_t>());
  }
  return s;
}

struct OurLosses {
  double ce = 0, lb = 0;
};

// ce (mean over targets) and LB over one batch, as the trainer computes them.
OurLosses our_losses(Model& model, const torch::Tensor& ids, const torch::Tensor& labels) {
  RouterTrace trace;
  trace.keep_logits = true;
  ForwardOptions fo;
  fo.trace = &trace;
  auto h = model.hidden_states(Batch{ids}, fo);
  const int64_t B = ids.size(0), T = ids.size(1);
  std::vector<int64_t> rows, targets;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t + 1 < T; ++t)
      if (labels[b][t + 1].item<int64_t>() != kIgnoreIndex) rows.push_back(b * T + t), targets.push_back(labels[b][t + 1].item<int64_t>());
  auto hr = h.reshape({B * T, -1}).index_select(0, torch::tensor(rows));
  const auto& w = model.weights();
  auto ce = fused_linear_cross_entropy_sum(hr, w.lm_head.defined() ? w.lm_head : w.embed, torch::tensor(targets));
  const LbForm form = lb_form_for(model.config());
  auto mask = form == LbForm::Emo ? (labels != kIgnoreIndex).reshape({-1}) : torch::ones({B * T}, torch::kBool);
  auto layers = lb_layers(model.config());
  RouterStats st = router_stats(layers, trace.logits, mask, false);
  double n = double(st.tokens);
  auto weights = lb_weights(form, layers, st.counts, n * n);
  OurLosses out;
  out.ce = ce.item<double>() / double(rows.size());
  out.lb = lb_contribution(weights, st).item<double>();
  return out;
}

}  // namespace

TEST_CASE("fused head + cross entropy equals torch's, value and gradients", "[finetune][loss]") {
  torch::manual_seed(0);
  auto h = torch::randn({37, 16}, torch::requires_grad());
  auto w = torch::randn({50, 16}, torch::requires_grad());
  auto targets = torch::randint(0, 50, {37}, torch::kInt64);
  auto ours = fused_linear_cross_entropy_sum(h, w, targets, /*chunk=*/8);
  (ours * 0.37).backward();
  auto h2 = h.detach().clone().requires_grad_(true), w2 = w.detach().clone().requires_grad_(true);
  auto ref = torch::nn::functional::cross_entropy(torch::mm(h2, w2.t()), targets,
                                                  torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
  (ref * 0.37).backward();
  CHECK(std::abs(ours.item<double>() - ref.item<double>()) < 1e-4);
  CHECK((h.grad() - h2.grad()).abs().max().item<double>() < 1e-5);
  CHECK((w.grad() - w2.grad()).abs().max().item<double>() < 1e-5);
  // A row whose target has underflowing probability (a loss far above 87) is still exact.
  auto hx = h.detach().clone();
  hx[0] *= 4000;
  auto big = fused_linear_cross_entropy_sum(hx, w.detach(), targets);
  auto big_ref = torch::nn::functional::cross_entropy(torch::mm(hx, w.detach().t()), targets,
                                                      torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
  CHECK(big_ref.item<double>() > 1000);
  CHECK(big.item<double>() == Approx(big_ref.item<double>()).epsilon(1e-6));
  // Frozen head: only the rows get a gradient.
  auto h3 = h.detach().clone().requires_grad_(true);
  fused_linear_cross_entropy_sum(h3, w.detach(), targets).backward();
  CHECK((h3.grad() - h2.grad() / 0.37).abs().max().item<double>() < 1e-5);
}

TEST_CASE("CE and load-balancing loss equal allenai/EMO's and transformers' (Python reference)", "[finetune][loss][reference]") {
  TempDir dir;
  for (std::string preset : {"emo-shared", "emo-always-active", "emo-perlayer", "emo-tiny", "olmoe-tiny"}) {
    INFO(preset);
    fs::path m = reference_model(dir.path(), preset);
    Checkpoint ck = Checkpoint::open(m);
    Model model = Model::load(ck);
    torch::manual_seed(7);
    auto ids = torch::randint(3, ck.config().vocab_size, {3, 9}, torch::kInt64);
    auto labels = ids.clone();
    labels.narrow(1, 0, 4).fill_(kIgnoreIndex);  // a "prompt" of 4 tokens
    labels[2][8] = kIgnoreIndex;
    OurLosses ours = our_losses(model, ids, labels);
    fs::path out = dir / (preset + ".safetensors");
    std::string cmd = reference_script("ref_forward.py") + " --model " +
                      m.string() + " --ids '" + matrix_text(ids) + "' --labels '" + matrix_text(labels) + "' --out " +
                      out.string() + " > /dev/null";
    REQUIRE(std::system(cmd.c_str()) == 0);
    auto f = SafetensorsFile::open(out.string());
    double ref_ce = tensor_from_view(f->view("ce_loss")).item<double>();
    double ref_lb = tensor_from_view(f->view("lb_loss")).item<double>();
    CHECK(std::abs(ours.ce - ref_ce) <= 1e-5 * std::max(1.0, std::abs(ref_ce)));
    CHECK(std::abs(ours.lb - ref_lb) <= 1e-5 * std::max(1.0, std::abs(ref_lb)));
    CHECK(ref_lb > 0);
  }
}

TEST_CASE("load balancing over a global batch: two halves with summed counts give the whole batch's loss",
          "[finetune][loss]") {
  ModelConfig c = ModelConfig::from_json(Json::parse(R"({"model_type": "emo", "vocab_size": 64, "hidden_size": 32,
    "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 4, "num_experts": 8,
    "num_experts_per_tok": 3, "num_shared_experts": 1, "pad_token_id": 1, "eos_token_id": 2})"), "test");
  Model model(c, init_weights(c, 1, {}));
  torch::manual_seed(3);
  auto ids = torch::randint(0, 64, {4, 12}, torch::kInt64);
  auto layers = lb_layers(c);
  auto stats_of = [&](const torch::Tensor& x) {
    RouterTrace trace;
    ForwardOptions fo;
    fo.trace = &trace;
    model.hidden_states(Batch{x}, fo);
    return router_stats(layers, trace.logits, torch::ones({x.numel()}, torch::kBool), true);
  };
  RouterStats whole = stats_of(ids), a = stats_of(ids.narrow(0, 0, 2)), b = stats_of(ids.narrow(0, 2, 2));
  double n = double(whole.tokens);
  REQUIRE(a.tokens + b.tokens == whole.tokens);
  auto w_whole = lb_weights(LbForm::Emo, layers, whole.counts, n * n);
  std::vector<torch::Tensor> summed;
  for (size_t i = 0; i < layers.size(); ++i) summed.push_back(a.counts[i] + b.counts[i]);
  auto w_split = lb_weights(LbForm::Emo, layers, summed, n * n);
  double lb_whole = lb_contribution(w_whole, whole).item<double>();
  double lb_split = lb_contribution(w_split, a).item<double>() + lb_contribution(w_split, b).item<double>();
  CHECK(std::abs(lb_whole - lb_split) < 1e-6);
  CHECK(std::abs(whole.z_sum.item<double>() - (a.z_sum + b.z_sum).item<double>()) < 1e-3);
  // z-loss: mean of logsumexp^2 over tokens and layers.
  RouterTrace trace;
  ForwardOptions fo;
  fo.trace = &trace;
  model.hidden_states(Batch{ids}, fo);
  double direct = 0;
  for (const auto& L : layers) direct += trace.logits[size_t(L.layer)].narrow(1, 0, L.softmax_cols).logsumexp(1).pow(2).sum().item<double>();
  CHECK(std::abs(direct - whole.z_sum.item<double>()) < 1e-3);
  // Balanced routing has load entropy near 1.
  for (double e : load_entropy(whole.counts)) CHECK((e > 0.5 && e <= 1.0));
}

TEST_CASE("activation checkpointing gives the same loss and gradients", "[finetune][checkpointing]") {
  ModelConfig c = ModelConfig::from_json(Json::parse(R"({"model_type": "emo", "vocab_size": 64, "hidden_size": 32,
    "intermediate_size": 16, "num_hidden_layers": 3, "num_attention_heads": 4, "num_experts": 8,
    "num_experts_per_tok": 3, "num_shared_experts": 1, "pad_token_id": 1, "eos_token_id": 2})"), "test");
  torch::manual_seed(5);
  auto ids = torch::randint(0, 64, {2, 10}, torch::kInt64);
  auto docs = torch::tensor({0, 0, 0, 1, 1, 1, 1, 2, 2, 2}).repeat({2, 1});
  std::vector<std::vector<torch::Tensor>> grads(2);
  std::vector<double> losses;
  for (int recompute = 0; recompute < 2; ++recompute) {
    Model model(c, init_weights(c, 2, {}));
    // A frozen embedding: the first layer's input needs no gradient, its weights do.
    for (auto& p : named_params(model.weights(), c)) p.tensor->set_requires_grad(true);
    model.weights().embed.set_requires_grad(false);
    RouterTrace trace;
    ForwardOptions fo;
    fo.trace = &trace;
    fo.checkpoint_layers = recompute == 1;
    auto h = model.hidden_states(Batch{ids, {}, {}, docs}, fo);
    auto layers = lb_layers(c);
    auto st = router_stats(layers, trace.logits, torch::ones({ids.numel()}, torch::kBool), true);
    auto w = lb_weights(LbForm::Emo, layers, st.counts, double(st.tokens) * st.tokens);
    auto loss = fused_linear_cross_entropy_sum(h.reshape({-1, 32}), model.weights().lm_head, ids.reshape({-1})) / 20.0 +
                0.1 * lb_contribution(w, st) + 0.01 * st.z_sum;
    loss.backward();
    losses.push_back(loss.item<double>());
    for (auto& p : named_params(model.weights(), c))
      grads[size_t(recompute)].push_back(p.tensor->grad().defined() ? p.tensor->grad().clone() : torch::Tensor());
  }
  CHECK(losses[0] == losses[1]);
  REQUIRE(grads[0].size() == grads[1].size());
  size_t compared = 0;
  for (size_t i = 0; i < grads[0].size(); ++i) {
    REQUIRE(grads[0][i].defined() == grads[1][i].defined());
    if (!grads[0][i].defined()) continue;
    CHECK((grads[0][i] - grads[1][i]).abs().max().item<double>() <= 1e-6);
    ++compared;
  }
  CHECK(compared > 10);
}
