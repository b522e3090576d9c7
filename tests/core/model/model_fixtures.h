// Small random models for the model tests: configs covering every option, weights drawn
// large enough that routing is decisive and norms that are not all ones (so a wrong cast
// or norm placement shows), and a bridge to the Python reference.
#pragma once

#include <torch/torch.h>

#include <string>

#include "core/model/model.h"
#include "test_util.h"

namespace emo::test {

// The micro EMO config with `patch` applied on top (JSON object text).
ModelConfig tiny_config(const std::string& patch = "{}");

// Random weights: linear layers ~ N(0, 0.15^2), norms 1 + N(0, 0.1^2).
ModelWeights random_weights(const ModelConfig& c, uint64_t seed);

// Writes config + weights as an fp32 checkpoint directory.
void save_checkpoint(const ModelConfig& c, const ModelWeights& w, const fs::path& dir);

// Runs tests/reference/ref_forward.py and returns the named output tensors.
struct ReferenceRun {
  torch::Tensor logits;
  std::map<std::string, torch::Tensor> all;
};
ReferenceRun run_reference(const fs::path& model_dir, const torch::Tensor& ids, const torch::Tensor& attention_mask = {},
                           const std::string& extra_args = "", const torch::Tensor& labels = {});

// Hugging Face transformers itself (tests/reference/hf_peer.py, the pinned PyPI version):
// from_pretrained(dir) in fp32 on `ids`; "logits" [B, T, V] and, with `router`,
// "router_logits.{i}" [B*T, E] per MoE layer. Throws when transformers does not load the
// directory cleanly (missing or unexpected weights).
std::map<std::string, torch::Tensor> transformers_forward(const fs::path& model_dir, const torch::Tensor& ids,
                                                          bool router = false);
// A random model of a transformers family (`type`: its model_type; `config`: JSON that
// overrides the config class's defaults), written by save_pretrained in the per-expert
// layout (transformers' default) or, with `fused`, its in-memory fused layout.
void transformers_random(const std::string& type, const std::string& config, uint64_t seed, const fs::path& out,
                         bool fused = false);

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b);

}  // namespace emo::test
