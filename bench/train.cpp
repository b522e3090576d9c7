// bench/train: training-step tokens/s of emo's trainer (sorted MoE dispatch with grouped
// expert GEMMs, fused head + cross entropy, fused AdamW) against a naive step written as
// plain LibTorch does it: transformers' per-expert boolean-mask loop, full logits +
// cross_entropy, torch::optim::AdamW. Same model, shape, batch and threads, one run.
//
//  1. MoE-dominated shape (hidden 512, 64 experts incl. 1 shared, top-8, expert FFN 256,
//     4 layers): ratio emo / naive, goal >= 2x.
//  2. The small shape (4 layers, hidden 128, 4 heads, 31 routed + 1 shared experts, top-3
//     routed, expert FFN 64, vocabulary 8002, batch 32 x 256): emo's tokens/s, goal >= 2x
//     the ~2,300 tokens/s of a plain PyTorch implementation on 2 cores.
//
// Each side runs one warm-up step, then --steps timed steps, the two alternating step by
// step so that both see the same load; tokens/s is of the median step.
//
//   bench_train [--steps N] [--threads N] [--shape moe|small|both] [--moe-batch B (32)]
//               [--profile TRACE.json: emo's steps only, alone, as a chrome://tracing file]
//               [--naive-allocator default|caching: what the naive step allocates with;
//                default is LibTorch's own, as plain LibTorch runs; caching shares emo's,
//                to see how much of the ratio the allocator is]
#include <c10/core/CPUAllocator.h>
#include <torch/csrc/autograd/profiler_legacy.h>

#include <cstring>

#include "bench/bench_util.h"
#include "core/checkpoint/init.h"
#include "core/model/cpu_allocator.h"
#include "core/model/model.h"
#include "core/model/runtime.h"
#include "core/util/log.h"
#include "finetune/trainer.h"

using namespace emo;
using namespace emo::bench;

namespace {

// Random token sequences of one length (a packed corpus without document breaks).
class RandomTokens : public TrainData {
 public:
  RandomTokens(size_t n, int64_t len, int64_t vocab, uint64_t seed) : len_(len) {
    auto gen = at::detail::createCPUGenerator(seed);
    ids_ = at::randint(0, vocab - 2, {int64_t(n), len}, gen, torch::kInt64).to(torch::kInt32);
    kind = "corpus";
  }
  size_t size() const override { return size_t(ids_.size(0)); }
  int64_t length(size_t) const override { return len_; }
  int64_t target_tokens(size_t) const override { return len_ - 1; }
  int64_t label_tokens(size_t) const override { return len_; }
  Sequence get(size_t i) const override {
    Sequence s;
    const int32_t* p = ids_[int64_t(i)].data_ptr<int32_t>();
    s.ids.assign(p, p + len_);
    s.labels = s.ids;
    return s;
  }

 private:
  torch::Tensor ids_;
  int64_t len_;
};

ModelConfig shape(const std::string& which) {
  Json j = parse_json(find_preset("tiny").config_json, "tiny");
  if (which == "moe") {
    j["hidden_size"] = 512, j["num_attention_heads"] = 8, j["num_key_value_heads"] = 8;
    j["num_experts"] = 64, j["num_experts_per_tok"] = 8, j["intermediate_size"] = 256;
  }
  // "small" is the tiny preset: 4 layers, hidden 128, 32 experts (1 shared), top-4
  // (= top-3 routed + the shared one), expert FFN 64, vocabulary 8002.
  return ModelConfig::from_json(j, which + " shape");
}

// emo: the trainer itself, timed per step from its metrics (the first step warms up).
// After each of its steps `between` runs once (the baseline's step), so the two
// alternate and see the same load on a shared machine.
double emo_tokens_per_second(const ModelConfig& c, int64_t batch, int64_t seq, int steps, const fs::path& dir,
                             const std::function<void()>& between, const std::string& profile) {
  fs::remove_all(dir);
  fs::create_directories(dir / "model");
  InitOptions io;
  io.seed = 0;
  write_initialised_model(dir / "model", c, io);
  Checkpoint ck = Checkpoint::open(dir / "model");
  Model model = Model::load(ck);
  RandomTokens data(size_t(batch * (steps + 1)), seq, c.vocab_size, 1);
  TrainOptions o;
  o.batch_size = batch;
  o.max_steps = steps + 1;
  o.lr = 1e-4;
  o.warmup_steps = 0;
  o.lb_weight = 0.01;
  o.out = dir / "out";
  std::vector<double> per_step;
  o.on_step = [&](const Json& m) {
    if (m["step"].get<int64_t>() > 1) per_step.push_back(m["seconds"].get<double>());  // step 1 warms up
    between();
  };
  TrainInputs in;
  in.checkpoint = &ck;
  in.parent_hash = "bench";
  in.model = &model;
  in.data = &data;
  in.data_hash = "bench";
  in.pad_id = c.pad_token_id.value_or(0);
  if (profile.empty()) {
    train(in, o);
  } else {  // a chrome://tracing file of every operator emo's steps ran
    o.on_step = [&](const Json& m) {
      if (m["step"].get<int64_t>() > 1) per_step.push_back(m["seconds"].get<double>());
    };
    torch::autograd::profiler::RecordProfile guard(profile);
    train(in, o);
  }
  return double(batch * seq) / median(per_step);
}

// The naive step: per-expert boolean-mask loop, [tokens, vocab] logits and
// cross_entropy, the load-balancing loss from the router logits, torch::optim::AdamW.
class NaiveStep {
 public:
  NaiveStep(const ModelConfig& c, int64_t batch, int64_t seq, bool plain_allocator)
      : c_(c), seq_(seq), plain_allocator_(plain_allocator), model_(c, init_weights(c, 0, {})) {
    for (auto& p : named_params(model_.weights(), c))
      if (p.tensor->defined()) p.tensor->requires_grad_(true), params_.push_back(*p.tensor);
    opt_ = std::make_unique<torch::optim::AdamW>(params_, torch::optim::AdamWOptions(1e-4).weight_decay(0.0));
    auto gen = at::detail::createCPUGenerator(1);
    ids_ = at::randint(0, c.vocab_size - 2, {batch, seq}, gen, torch::kInt64);
  }

  // Runs one step, on LibTorch's default CPU allocator as plain LibTorch does unless
  // told otherwise (it runs inside emo's trainer, which keeps its caching allocator
  // installed); the first step is a warm-up and is not timed.
  void operator()() {
    ScopedCpuAllocator plain(plain_allocator_ ? c10::GetDefaultCPUAllocator() : c10::GetCPUAllocator());
    double s = seconds_of([&] { step(); });
    if (++calls_ > 1) seconds_.push_back(s);
  }
  double tokens_per_second() const { return seconds_.empty() ? 0.0 : double(ids_.numel()) / median(seconds_); }

 private:
  void step() {
    RouterTrace trace;
    ForwardOptions fo;
    fo.dispatch = Dispatch::MaskLoop;
    fo.trace = &trace;
    auto logits = model_.forward({ids_}, fo);
    auto ce = torch::nn::functional::cross_entropy(logits.narrow(1, 0, seq_ - 1).reshape({-1, c_.vocab_size}),
                                                   ids_.narrow(1, 1, seq_ - 1).reshape({-1}));
    torch::Tensor lb = torch::zeros({});
    for (const auto& l : trace.logits) {  // Switch-style balance term, as HF computes it
      if (!l.defined()) continue;
      auto p = torch::softmax(l, -1);
      auto top = std::get<1>(p.topk(c_.num_experts_per_tok, -1));
      auto frac = torch::one_hot(top, l.size(1)).to(torch::kFloat32).mean(std::vector<int64_t>{0, 1});
      lb = lb + (frac * p.mean(0)).sum() * double(l.size(1));
    }
    auto loss = ce + 0.01 * lb;
    opt_->zero_grad();
    loss.backward();
    torch::nn::utils::clip_grad_norm_(params_, 1.0);
    opt_->step();
  }

  ModelConfig c_;
  int64_t seq_;
  bool plain_allocator_;
  Model model_;
  std::vector<torch::Tensor> params_;
  std::unique_ptr<torch::optim::AdamW> opt_;
  torch::Tensor ids_;
  int calls_ = 0;
  std::vector<double> seconds_;
};

// Both contenders, their steps alternating; returns {naive, emo} tokens/s.
std::pair<double, double> measure(const ModelConfig& c, int64_t batch, int64_t seq, int steps, const fs::path& dir,
                                  const std::string& profile, bool plain_allocator) {
  NaiveStep naive(c, batch, seq, plain_allocator);
  double ours = emo_tokens_per_second(c, batch, seq, steps, dir, std::ref(naive), profile);
  return {naive.tokens_per_second(), ours};
}

}  // namespace

int main(int argc, char** argv) {
  bench::check_flag_pairs(argc, argv, "bench_train [--steps N] [--threads N] [--shape moe|small|both] [--moe-batch B (32)] "
                                     "[--profile TRACE.json] [--naive-allocator default|caching]");
  int steps = 5, threads = 0;
  int64_t moe_batch = 32;
  std::string which = "both", profile, naive_allocator = "default";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--steps")) steps = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--shape")) which = argv[i + 1];
    else if (!std::strcmp(argv[i], "--moe-batch")) moe_batch = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--profile")) profile = argv[i + 1];
    else if (!std::strcmp(argv[i], "--naive-allocator")) naive_allocator = argv[i + 1];
  }
  if (naive_allocator != "default" && naive_allocator != "caching") {
    std::fprintf(stderr, "bench_train: --naive-allocator: expected default or caching, got %s\n", naive_allocator.c_str());
    return 2;
  }
  const bool plain_allocator = naive_allocator == "default";
  const char* naive_label = plain_allocator ? "naive step (mask loop, full logits, AdamW)" : "naive step, on emo's caching allocator";
  configure_threads(threads);
  set_log_level(LogLevel::Warn);
  const fs::path dir = fs::temp_directory_path() / "emo-bench-train";
  if (which == "moe" || which == "both") {
    ModelConfig c = shape("moe");
    const int64_t batch = moe_batch, seq = 256;
    std::printf("MoE-dominated shape: %lld layers, hidden %lld, %lld experts (1 shared), top-%lld, expert FFN %lld, "
                "vocab %lld; batch %lld x %lld; %d threads\n",
                (long long)c.num_hidden_layers, (long long)c.hidden_size, (long long)c.num_experts,
                (long long)c.num_experts_per_tok, (long long)c.intermediate_size, (long long)c.vocab_size,
                (long long)batch, (long long)seq, at::get_num_threads());
    auto [naive, ours] = measure(c, batch, seq, steps, dir, profile, plain_allocator);
    std::printf("  %-44s %9.0f tokens/s\n", naive_label, naive);
    std::printf("  %-44s %9.0f tokens/s\n", "emo trainer", ours);
    std::printf("  ratio emo/naive = %.2fx (goal >= 2x)\n", ours / naive);
  }
  if (which == "small" || which == "both") {
    ModelConfig c = shape("small");
    const int64_t batch = 32, seq = 256;
    std::printf("small shape: 4 layers, hidden 128, 4 heads, 31 routed + 1 shared experts, top-3 routed, expert FFN 64, "
                "vocab 8002; batch %lld x %lld; %d threads\n",
                (long long)batch, (long long)seq, at::get_num_threads());
    auto [naive, ours] = measure(c, batch, seq, steps, dir, profile, plain_allocator);
    std::printf("  %-44s %9.0f tokens/s\n", naive_label, naive);
    std::printf("  %-44s %9.0f tokens/s\n", "emo trainer", ours);
    std::printf("  emo = %.2fx the naive step; %.2fx the ~2,300 tokens/s of plain PyTorch (goal >= 2x)\n", ours / naive,
                ours / 2300.0);
  }
  fs::remove_all(dir);
  return 0;
}
