#include "core/model/model_fixtures.h"

#include <cstdlib>
#include <sstream>

#include "core/io/tensor_store.h"
#include "core/util/fs.h"
#include "core/model/tensor_bridge.h"
#include "core/checkpoint/init.h"

namespace emo::test {

ModelConfig tiny_config(const std::string& patch) {
  Json j = parse_json(find_preset("micro").config_json, "micro");
  j["vocab_size"] = 64;
  j["pad_token_id"] = 0;
  j["eos_token_id"] = 1;
  Json p = parse_json(patch, "patch");
  for (auto it = p.begin(); it != p.end(); ++it) j[it.key()] = it.value();
  return ModelConfig::from_json(j, "tiny test config");
}

ModelWeights random_weights(const ModelConfig& c, uint64_t seed) {
  torch::NoGradGuard ng;
  ModelWeights w = init_weights(c, seed, {});
  auto gen = at::detail::createCPUGenerator(seed);
  for (auto& p : named_params(w, c)) {
    torch::Tensor& t = *p.tensor;
    if (p.is_norm()) t.copy_(1 + 0.1 * at::randn(t.sizes(), gen));
    else t.copy_(0.15 * at::randn(t.sizes(), gen));
  }
  return w;
}

void save_checkpoint(const ModelConfig& c, const ModelWeights& w, const fs::path& dir) {
  fs::create_directories(dir);
  WriteOptions o;
  save_weights(w, c, dir, o, [](const CanonicalTensor&) { return DType::F32; });
}

namespace {
std::string rows_text(const torch::Tensor& t) {
  std::ostringstream s;
  auto c = t.to(torch::kInt64).contiguous();
  for (int64_t b = 0; b < c.size(0); ++b) {
    if (b) s << ";";
    for (int64_t i = 0; i < c.size(1); ++i) s << (i ? "," : "") << c[b][i].item<int64_t>();
  }
  return s.str();
}
}  // namespace

ReferenceRun run_reference(const fs::path& model_dir, const torch::Tensor& ids, const torch::Tensor& attention_mask,
                           const std::string& extra_args, const torch::Tensor& labels) {
  TempDir tmp;
  fs::path out = tmp / "ref.safetensors";
  std::string cmd = reference_script("ref_forward.py") + " --model " +
                    model_dir.string() + " --ids '" + rows_text(ids) + "' --out " + out.string() + " " + extra_args;
  if (attention_mask.defined()) cmd += " --attention-mask '" + rows_text(attention_mask) + "'";
  if (labels.defined()) cmd += " --labels='" + rows_text(labels) + "'";
  cmd += " > " + (tmp / "log").string() + " 2>&1";
  if (std::system(cmd.c_str()) != 0) throw std::runtime_error("reference failed: " + read_text_file(tmp / "log"));
  auto f = SafetensorsFile::open(out.string());
  ReferenceRun r;
  for (const auto& t : f->tensors()) r.all[t.name] = tensor_from_view(f->view(t)).clone();
  r.logits = r.all.at("logits");
  return r;
}

namespace {
// Runs hf_peer.py with `args`; its stderr and stdout go to a log shown on failure.
void run_peer(const std::string& args) {
  TempDir tmp;
  const std::string cmd = reference_script("hf_peer.py") + " " + args + " > '" + (tmp / "log").string() + "' 2>&1";
  if (std::system(cmd.c_str()) != 0) throw std::runtime_error("hf_peer.py " + args + ":\n" + read_text_file(tmp / "log"));
}
}  // namespace

std::map<std::string, torch::Tensor> transformers_forward(const fs::path& model_dir, const torch::Tensor& ids,
                                                          bool router) {
  TempDir tmp;
  run_peer("forward --model '" + model_dir.string() + "' --ids '" + rows_text(ids) + "' --out '" +
           (tmp / "out.safetensors").string() + "'" + (router ? " --router" : ""));
  auto f = SafetensorsFile::open((tmp / "out.safetensors").string());
  std::map<std::string, torch::Tensor> out;
  for (const auto& t : f->tensors()) out[t.name] = tensor_from_view(f->view(t)).clone();
  return out;
}

void transformers_random(const std::string& type, const std::string& config, uint64_t seed, const fs::path& out,
                         bool fused) {
  run_peer("random --type " + type + " --config '" + config + "' --seed " + std::to_string(seed) + " --out '" +
           out.string() + "' --layout " + (fused ? "fused" : "per-expert"));
}

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

}  // namespace emo::test
