// bench/moe: forward + backward tokens/s of emo's sorted MoE dispatch against the
// per-expert boolean-mask loop transformers uses, on an MoE-dominated shape of each family
// (hidden 512, 4 layers; EMO: 64 experts incl. 1 shared, top-8, expert FFN 256; Qwen3-MoE:
// 64, top-8, FFN 256; Qwen2-MoE: 60, top-4, FFN 256 + a shared expert of 1024; Mixtral: 8,
// top-2, FFN 1024), same threads, one run. Goal: >= 2x. Not met on a CPU once libgomp's
// spinning no longer slows the loop's many small GEMMs (core/model/startup/omp_wait.cpp):
// both paths do the same GEMMs; docs/performance.md has the figures with and without it.
//
//   bench_moe [--family emo|qwen3_moe|qwen2_moe|mixtral] [--steps N] [--batch B] [--seq T] [--threads N]
#include <cstring>

#include "bench/bench_util.h"
#include "core/checkpoint/init.h"
#include "core/model/model.h"
#include "core/model/runtime.h"

using namespace emo;
using namespace emo::bench;

namespace {

double tokens_per_second(Model& model, const torch::Tensor& ids, Dispatch mode, int steps) {
  ForwardOptions o;
  o.dispatch = mode;
  auto step = [&] {
    auto logits = model.forward({ids}, o);
    auto loss = torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}), ids.reshape({-1}));
    loss.backward();
    for (auto& p : named_params(model.weights(), model.config())) p.tensor->mutable_grad() = torch::Tensor();
  };
  step();  // warm-up: allocator, thread pool
  double secs = seconds_of([&] {
    for (int i = 0; i < steps; ++i) step();
  });
  return double(ids.numel()) * steps / secs;
}

// Each family's tiny preset at an MoE-dominated shape: experts, top-k and expert width as
// the family's real models proportion them.
struct MoeShape {
  const char* family;
  const char* preset;
  int64_t experts, top_k, width, shared_width;
};
const MoeShape kShapes[] = {
    {"emo", "tiny", 64, 8, 256, 0},
    {"qwen3_moe", "tiny-qwen3-moe", 64, 8, 256, 0},
    {"qwen2_moe", "tiny-qwen2-moe", 60, 4, 256, 1024},
    {"mixtral", "tiny-mixtral", 8, 2, 1024, 0},
};

ModelConfig moe_shape(const std::string& family) {
  for (const MoeShape& m : kShapes) {
    if (family != m.family) continue;
    const Family& f = family_named(family);
    Json j = parse_json(find_preset(m.preset).config_json, m.preset);
    j["hidden_size"] = 512, j["num_attention_heads"] = 8, j["num_key_value_heads"] = 8;
    j.erase("head_dim");
    j[f.keys.experts] = m.experts, j["num_experts_per_tok"] = m.top_k, j[f.keys.expert_width] = m.width;
    if (m.shared_width) j[f.keys.shared_width] = m.shared_width;
    return ModelConfig::from_json(j, "bench shape");
  }
  std::fprintf(stderr, "--family: one of emo, qwen3_moe, qwen2_moe, mixtral\n");
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  bench::check_flag_pairs(argc, argv, "bench_moe [--family NAME] [--steps N] [--batch B] [--seq T] [--threads N]");
  int steps = 3, batch = 8, seq = 256, threads = 0;
  std::string family = "emo";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--steps")) steps = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--batch")) batch = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--seq")) seq = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--family")) family = argv[i + 1];
  }
  configure_threads(threads);
  ModelConfig c = moe_shape(family);
  ModelWeights w = init_weights(c, 0, {});
  for (auto& p : named_params(w, c)) p.tensor->requires_grad_(true);
  Model model(c, std::move(w));
  auto gen = at::detail::createCPUGenerator(1);
  auto ids = at::randint(0, c.vocab_size, {batch, seq}, gen, torch::kInt64);
  std::printf("shape: %s, %lld layers, hidden %lld, %lld experts, top-%lld, expert FFN %lld; batch %d x %d; %d threads\n",
              c.model_type().c_str(), (long long)c.num_hidden_layers, (long long)c.hidden_size, (long long)c.num_experts,
              (long long)c.num_experts_per_tok, (long long)c.intermediate_size, batch, seq, at::get_num_threads());
  double mask = tokens_per_second(model, ids, Dispatch::MaskLoop, steps);
  double sorted = tokens_per_second(model, ids, Dispatch::Sorted, steps);
  std::printf("%-40s %10.0f tokens/s\n", "boolean-mask loop (transformers)", mask);
  std::printf("%-40s %10.0f tokens/s\n", "sorted dispatch (emo)", sorted);
  std::printf("ratio sorted/mask = %.2fx (goal >= 2x), forward+backward, %d steps each\n", sorted / mask, steps);
  return 0;
}
