#include "eval/eval_fixtures.h"

#include "core/checkpoint/init.h"
#include "core/io/tensor_store.h"
#include "core/util/fs.h"

namespace emo::test {

EvalModel& eval_model() {
  static TempDir dir;
  static EvalModel m = [] {
    Json j = parse_json(find_preset("micro").config_json, "micro");
    j["max_position_embeddings"] = 2048;
    ModelConfig c = ModelConfig::from_json(j, "eval test config");
    torch::NoGradGuard ng;
    ModelWeights w = init_weights(c, 21, {});
    auto gen = at::detail::createCPUGenerator(21);
    for (auto& p : named_params(w, c)) {
      torch::Tensor& t = *p.tensor;
      if (p.is_norm())
        t.copy_(1 + 0.1 * at::randn(t.sizes(), gen));
      else
        t.copy_(0.15 * at::randn(t.sizes(), gen));
    }
    EvalModel out;
    out.dir = dir / "micro";
    fs::create_directories(out.dir);
    save_weights(w, c, out.dir, WriteOptions{}, [](const CanonicalTensor&) { return DType::F32; });
    copy_file_synced(data_dir() / "tokenizers/dolma2-8k/tokenizer.json", out.dir / "tokenizer.json");
    out.model = std::make_unique<Model>(c, std::move(w));
    out.tokenizer = std::make_unique<Tokenizer>(Tokenizer::load((out.dir / "tokenizer.json").string()));
    return out;
  }();
  return m;
}

std::vector<double> reference_logprobs(Model& model, const std::vector<int32_t>& ids, const RoutingControl* routing) {
  torch::NoGradGuard ng;
  std::vector<int64_t> v(ids.begin(), ids.end());
  ForwardOptions fo;
  fo.routing = routing;
  Batch b;
  b.input_ids = torch::tensor(v, torch::kInt64).unsqueeze(0);
  auto logp = torch::log_softmax(model.forward(b, fo).to(torch::kFloat64)[0], -1);
  std::vector<double> out;
  for (size_t t = 1; t < v.size(); ++t) out.push_back(logp[int64_t(t) - 1][v[t]].item<double>());
  return out;
}

std::vector<int64_t> greedy_by_recompute(Model& model, std::vector<int64_t> seq, int n, const RoutingControl* routing) {
  torch::NoGradGuard ng;
  std::vector<int64_t> out;
  ForwardOptions fo;
  fo.routing = routing;
  for (int i = 0; i < n; ++i) {
    Batch b;
    b.input_ids = torch::tensor(seq, torch::kInt64).unsqueeze(0);
    int64_t next = model.forward(b, fo)[0][-1].argmax().item<int64_t>();
    out.push_back(next);
    seq.push_back(next);
  }
  return out;
}

}  // namespace emo::test
