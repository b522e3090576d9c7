// bench/train: training-step tokens/s of emo's trainer (sorted MoE dispatch with grouped
// expert GEMMs, fused head + cross entropy, fused AdamW) against two peers, one run each,
// the contenders' steps alternating:
//  - transformers itself (--shape olmoe): OlmoeForCausalLM from PyPI (the pinned version, its
//    default MoE implementation, fp32, the same threads) on the same OLMoE checkpoint and
//    batch shape, driven step by step through tests/reference/hf_peer.py train-server. Goal
//    on CPU: emo >= 2x transformers. With --device cuda --precision bf16 (scripts/gpu-check)
//    the same on a GPU, with emo's MFU.
//  - a naive step written as plain LibTorch does it: transformers' per-expert boolean-mask
//    loop, full logits + cross_entropy, torch::optim::AdamW (--shape moe|small).
//
//  0. OLMoE shape (--shape olmoe): OLMoE, 4 layers, hidden 512, 64 experts, top-8, expert FFN
//     256, vocab 8002, batch 32 x 256 (--batch, --seq); --config FILE for another model.
//  1. MoE-dominated shape (hidden 512, 64 experts incl. 1 shared, top-8, expert FFN 256,
//     4 layers): ratio emo / naive, goal >= 2x.
//  2. The small shape (4 layers, hidden 128, 4 heads, 31 routed + 1 shared experts, top-3
//     routed, expert FFN 64, vocabulary 8002, batch 32 x 256): emo's tokens/s, goal >= 2x
//     the ~2,300 tokens/s of a plain PyTorch implementation on 2 cores.
//
// Each side runs one warm-up step, then --steps timed steps, the two alternating step by
// step so that both see the same load; tokens/s is of the median step.
//
//   bench_train [--steps N] [--threads N] [--shape olmoe|moe|small|both] [--moe-batch B (32)]
//               [--batch B --seq T --config FILE | --preset P [--set KEY=VALUE ...]
//                --device cpu|cuda --precision fp32|bf16 --peer transformers|none
//                --json OUT: with --shape olmoe; --peer none for a family transformers lacks]
//               [--profile TRACE.json: emo's steps only, alone, as a chrome://tracing file]
//               [--naive-allocator default|caching: what the naive step allocates with;
//                default is LibTorch's own, as plain LibTorch runs; caching shares emo's,
//                to see how much of the ratio the allocator is]
#include <c10/core/CPUAllocator.h>
#ifdef EMO_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#endif
#include <torch/csrc/autograd/profiler_legacy.h>

#include <cstring>
#include <sstream>

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
  if (which == "olmoe") {
    Json j = parse_json(find_preset("tiny-olmoe").config_json, "tiny-olmoe");
    j["hidden_size"] = 512, j["num_attention_heads"] = 8, j["num_key_value_heads"] = 8;
    j["num_experts"] = 64, j["num_experts_per_tok"] = 8, j["intermediate_size"] = 256;
    return ModelConfig::from_json(j, "olmoe shape");
  }
  Json j = parse_json(find_preset("tiny").config_json, "tiny");
  if (which == "moe") {
    j["hidden_size"] = 512, j["num_attention_heads"] = 8, j["num_key_value_heads"] = 8;
    j["num_experts"] = 64, j["num_experts_per_tok"] = 8, j["intermediate_size"] = 256;
  }
  // "small" is the tiny preset: 4 layers, hidden 128, 32 experts (1 shared), top-4
  // (= top-3 routed + the shared one), expert FFN 64, vocabulary 8002.
  return ModelConfig::from_json(j, which + " shape");
}

struct Placement {
  torch::Device device = torch::kCPU;
  bool bf16 = false;  // CUDA: bf16 autocast over fp32 master weights
};

// emo: the trainer itself on the checkpoint in `model_dir`, timed per step from its metrics
// (the first step warms up). After each of its steps `between` runs once (the peer's step),
// so the two alternate and see the same load on a shared machine.
double emo_tokens_per_second(const fs::path& model_dir, int64_t batch, int64_t seq, int steps, const fs::path& out,
                             const std::function<void()>& between, const std::string& profile, const Placement& where) {
  fs::remove_all(out);
  Checkpoint ck = Checkpoint::open(model_dir);
  LoadOptions lo;
  lo.device = where.device;
  Model model = Model::load(ck, lo);
  const ModelConfig& c = ck.config();
  RandomTokens data(size_t(batch * (steps + 1)), seq, c.vocab_size, 1);
  TrainOptions o;
  o.batch_size = batch;
  o.max_steps = steps + 1;
  o.lr = 1e-4;
  o.warmup_steps = 0;
  o.lb_weight = 0.01;
  o.autocast_bf16 = where.bf16;
  o.out = out;
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

// The same for a fresh random model of config `c`, written to dir/model first.
double emo_tokens_per_second(const ModelConfig& c, int64_t batch, int64_t seq, int steps, const fs::path& dir,
                             const std::function<void()>& between, const std::string& profile) {
  fs::remove_all(dir);
  fs::create_directories(dir / "model");
  InitOptions io;
  io.seed = 0;
  write_initialised_model(dir / "model", c, io);
  return emo_tokens_per_second(dir / "model", batch, seq, steps, dir / "out", between, profile, {});
}

// Training FLOPs per token: 6 x the parameters a token uses (attention projections, the
// router, top-k experts, the output head; not the embedding lookup) + 6 x layers x width x
// sequence for causal attention's scores and values (half of the full 12).
double training_flops_per_token(const ModelConfig& c, int64_t seq) {
  const double H = double(c.hidden_size), D = double(c.resolved_head_dim());
  const double q = double(c.num_attention_heads) * D, kv = double(c.num_key_value_heads) * D;
  double per_token = double(c.vocab_size) * H;
  for (const auto& layer : c.layers()) {
    per_token += H * (q + 2 * kv) + q * H;
    if (layer.num_experts == 0) {
      per_token += 3.0 * H * double(c.dense_intermediate_size.value_or(c.intermediate_size));
    } else {
      per_token += H * double(layer.num_experts) + double(c.num_experts_per_tok) * 3.0 * H * double(c.intermediate_size);
    }
  }
  return 6.0 * per_token + 6.0 * double(c.num_hidden_layers) * q * double(seq);
}

// Dense bf16 peak of the GPU, from its name (0 where unknown).
double peak_bf16_flops(const std::string& name) {
  if (name.find("H200") != std::string::npos || name.find("H100") != std::string::npos) return 989.4e12;
  if (name.find("A100") != std::string::npos) return 312e12;
  return 0;
}

// emo and transformers on the same checkpoint and batch shape, steps alternating.
struct PeerFigures {
  double emo = 0, transformers = 0, transformers_first_loss = 0;
};
PeerFigures against_transformers(const ModelConfig& c, int64_t batch, int64_t seq, int steps, const fs::path& dir,
                                 const Placement& where, bool with_peer) {
  fs::remove_all(dir);
  fs::create_directories(dir / "model");
  InitOptions io;
  io.seed = 0;
  io.dtype = DType::F32;  // both start from the same fp32 weights
  write_initialised_model(dir / "model", c, io);
  PeerFigures f;
  if (!with_peer) {  // a family transformers has no class for (EMO): emo alone
    f.emo = emo_tokens_per_second(dir / "model", batch, seq, steps, dir / "out", [] {}, "", where);
    return f;
  }
  PeerProcess peer({reference_python(), peer_script(), "train-server", "--model", (dir / "model").string(), "--batch",
                    std::to_string(batch), "--seq", std::to_string(seq), "--threads",
                    std::to_string(at::get_num_threads()), "--device", where.device.is_cuda() ? "cuda" : "cpu",
                    "--precision", where.bf16 ? "bf16" : "fp32"});
  std::vector<double> peer_seconds;
  auto peer_step = [&] {
    std::istringstream reply(peer.request("step"));
    double seconds = 0, loss = 0;
    reply >> seconds >> loss;
    if (peer_seconds.empty() && f.transformers_first_loss == 0) f.transformers_first_loss = loss;
    else peer_seconds.push_back(seconds);
  };
  f.emo = emo_tokens_per_second(dir / "model", batch, seq, steps, dir / "out", peer_step, "", where);
  f.transformers = double(batch * seq) / median(peer_seconds);
  return f;
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

// --shape olmoe: emo against transformers; prints the figures (and writes them as JSON).
int run_against_transformers(const ModelConfig& c, int64_t batch, int64_t seq, int steps, const Placement& where,
                             bool with_peer, const std::string& json_out) {
  std::string device_name = "CPU";
#ifdef EMO_WITH_CUDA
  if (where.device.is_cuda()) device_name = at::cuda::getDeviceProperties(0)->name;
#endif
  std::printf("%s: %lld layers, hidden %lld, %lld experts, top-%lld, expert FFN %lld, vocab %lld; batch %lld x %lld; "
              "%s, %s, %d threads\n",
              c.model_type().c_str(), (long long)c.num_hidden_layers, (long long)c.hidden_size,
              (long long)c.num_experts, (long long)c.num_experts_per_tok, (long long)c.intermediate_size,
              (long long)c.vocab_size, (long long)batch, (long long)seq, device_name.c_str(),
              where.bf16 ? "bf16 autocast" : "fp32", at::get_num_threads());
  const fs::path dir = fs::temp_directory_path() / "emo-bench-train-peer";
  PeerFigures f = against_transformers(c, batch, seq, steps, dir, where, with_peer);
  fs::remove_all(dir);
  const double flops = training_flops_per_token(c, seq), peak = peak_bf16_flops(device_name);
  Json j = {{"device", device_name},        {"precision", where.bf16 ? "bf16" : "fp32"},
            {"threads", at::get_num_threads()}, {"batch", batch},
            {"seq", seq},                      {"config", c.model_defining()},
            {"emo_tokens_per_s", f.emo},       {"flops_per_token", flops}};
  if (with_peer) {
    std::printf("  %-44s %9.0f tokens/s\n", "transformers OlmoeForCausalLM (its default)", f.transformers);
    j["transformers_tokens_per_s"] = f.transformers, j["ratio"] = f.emo / f.transformers;
  }
  std::printf("  %-44s %9.0f tokens/s\n", "emo trainer", f.emo);
  if (with_peer)
    std::printf("  ratio emo/transformers = %.2fx (goal >= %s)\n", f.emo / f.transformers, where.device.is_cuda() ? "1.5x" : "2x");
  if (peak > 0) {
    j["emo_mfu"] = f.emo * flops / peak;
    std::printf("  MFU (of %.0f TFLOP/s bf16): emo %.1f%%", peak / 1e12, 100 * f.emo * flops / peak);
    if (with_peer) j["transformers_mfu"] = f.transformers * flops / peak, std::printf(", transformers %.1f%%", 100 * f.transformers * flops / peak);
    std::printf("\n");
  }
  if (!json_out.empty()) write_file_atomic(json_out, j.dump(2) + "\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  bench::check_flag_pairs(argc, argv, "bench_train [--steps N] [--threads N] [--shape olmoe|moe|small|both] [--moe-batch B (32)] "
                                     "[--profile TRACE.json] [--naive-allocator default|caching] "
                                     "[--batch B --seq T --config FILE|--preset P [--set K=V ...] --device cpu|cuda --precision fp32|bf16 "
                                     "--peer transformers|none --json OUT: with --shape olmoe]");
  int steps = 5, threads = 0;
  int64_t moe_batch = 32, batch = 32, seq = 256;
  std::string which = "both", profile, naive_allocator = "default", config_file, device = "cpu", precision = "fp32",
              json_out, preset, peer = "transformers";
  std::vector<std::string> sets;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--steps")) steps = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--shape")) which = argv[i + 1];
    else if (!std::strcmp(argv[i], "--moe-batch")) moe_batch = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--profile")) profile = argv[i + 1];
    else if (!std::strcmp(argv[i], "--naive-allocator")) naive_allocator = argv[i + 1];
    else if (!std::strcmp(argv[i], "--batch")) batch = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--seq")) seq = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--config")) config_file = argv[i + 1];
    else if (!std::strcmp(argv[i], "--device")) device = argv[i + 1];
    else if (!std::strcmp(argv[i], "--precision")) precision = argv[i + 1];
    else if (!std::strcmp(argv[i], "--json")) json_out = argv[i + 1];
    else if (!std::strcmp(argv[i], "--preset")) preset = argv[i + 1];
    else if (!std::strcmp(argv[i], "--set")) sets.push_back(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--peer")) peer = argv[i + 1];
    else {
      std::fprintf(stderr, "bench_train: unknown flag %s\n", argv[i]);
      return 2;
    }
  }
  if (naive_allocator != "default" && naive_allocator != "caching") {
    std::fprintf(stderr, "bench_train: --naive-allocator: expected default or caching, got %s\n", naive_allocator.c_str());
    return 2;
  }
  configure_threads(threads);
  set_log_level(LogLevel::Warn);
  if (which == "olmoe") {
    Placement where;
    where.device = device == "cuda" ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
    where.bf16 = precision == "bf16";
    if (where.device.is_cuda()) use_deterministic_cuda();  // as emo finetune runs on a GPU
    ModelConfig c = !config_file.empty() ? ModelConfig::load(config_file)
                    : !preset.empty()    ? ModelConfig::from_json(parse_json(find_preset(preset).config_json, preset), preset)
                                         : shape("olmoe");
    for (const auto& kv : sets) {
      const auto eq = kv.find('=');
      if (eq == std::string::npos) {
        std::fprintf(stderr, "bench_train: --set takes KEY=VALUE, got %s\n", kv.c_str());
        return 2;
      }
      c.set_override(kv.substr(0, eq), kv.substr(eq + 1));
    }
    return run_against_transformers(c, batch, seq, steps, where, peer == "transformers", json_out);
  }
  const bool plain_allocator = naive_allocator == "default";
  const char* naive_label = plain_allocator ? "naive step (mask loop, full logits, AdamW)" : "naive step, on emo's caching allocator";
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
