#include "core/checkpoint/summary.h"

#include <sstream>

#include "core/util/error.h"
#include "core/util/log.h"

namespace emo {

ParamCounts count_params(const ModelConfig& config) {
  // Sizes come from a config.json that may be hostile: every sum and product is checked.
  auto add = [&](uint64_t& acc, uint64_t n) {
    if (__builtin_add_overflow(acc, n, &acc)) fail(config.source, "", "the parameter count overflows 64 bits");
  };
  auto mul = [&](uint64_t a, uint64_t b) {
    uint64_t r = 0;
    if (__builtin_mul_overflow(a, b, &r)) fail(config.source, "", "the parameter count overflows 64 bits");
    return r;
  };
  ParamCounts p;
  auto specs = config.layers();
  for (const auto& t : canonical_tensors(config)) {
    uint64_t n = shape_numel(t.shape, config.source, t.name);
    add(p.total, n);
    if (t.role == Role::Embedding || t.role == Role::LmHead) add(p.embedding, n);
    if (t.role != Role::Expert) add(p.active, n);
  }
  // A token runs top_k experts per MoE layer (EMO's top_k counts the shared expert).
  for (size_t l = 0; l < specs.size(); ++l) {
    if (specs[l].dense()) continue;
    uint64_t per_expert = mul(3, mul(uint64_t(config.hidden_size), uint64_t(config.intermediate_size)));
    add(p.active, mul(uint64_t(std::min<int64_t>(config.num_experts_per_tok, specs[l].num_experts)), per_expert));
  }
  return p;
}

ModelSummary summarize(const Checkpoint& ck) {
  ModelSummary s;
  s.config = ck.config();
  s.params = count_params(ck.config());
  for (const auto& t : ck.tensors()) {
    TensorView v = ck.view(t);
    s.bytes_by_dtype[dtype_name(v.dtype)] += v.nbytes;
  }
  s.bytes_on_disk = ck.store().bytes_on_disk();
  s.weight_files = ck.store().files().size();
  s.layout = ck.layout();
  s.provenance = Provenance::load(ck.dir());
  return s;
}

Json summary_json(const ModelSummary& s) {
  const ModelConfig& c = s.config;
  Json layers = Json::array();
  for (const auto& l : c.layers())
    layers.push_back({{"experts", l.num_experts}, {"routed", l.num_routed()}, {"shared", l.num_shared_experts},
                      {"dense", l.dense()}});
  Json j = {
      {"model_type", c.model_type()},
      {"layers", c.num_hidden_layers},
      {"hidden_size", c.hidden_size},
      {"intermediate_size", c.intermediate_size},
      {"vocab_size", c.vocab_size},
      {"attention_heads", c.num_attention_heads},
      {"kv_heads", c.num_key_value_heads},
      {"head_dim", c.resolved_head_dim()},
      {"top_k", c.num_experts_per_tok},
      {"num_experts", c.num_experts},
      {"num_shared_experts", c.num_shared_experts},
      {"experts_per_layer", layers},
      {"norm_topk_prob", c.norm_topk_prob},
      {"tie_word_embeddings", c.tie_word_embeddings},
      {"params", {{"total", s.params.total}, {"active", s.params.active}, {"embedding", s.params.embedding},
                  {"active_non_embedding", s.params.active_non_embedding()}}},
      {"bytes_by_dtype", s.bytes_by_dtype},
      {"bytes_on_disk", s.bytes_on_disk},
      {"weight_files", s.weight_files},
      {"expert_layout", layout_name(s.layout)},
  };
  if (s.provenance) {
    Json p = {{"command", s.provenance->command}, {"output_hash", s.provenance->output_hash},
              {"emo_version", s.provenance->emo_version}, {"finished", s.provenance->finished}};
    Json inputs = Json::array();
    for (const auto& in : s.provenance->inputs) inputs.push_back({{"role", in.role}, {"path", in.path}, {"hash", in.hash}});
    p["inputs"] = inputs;
    j["provenance"] = p;
  } else {
    j["provenance"] = nullptr;
  }
  return j;
}

std::string summary_text(const ModelSummary& s) {
  const ModelConfig& c = s.config;
  std::ostringstream o;
  o << "model_type        " << c.model_type() << "\n";
  o << "layers            " << c.num_hidden_layers << "\n";
  o << "hidden size       " << c.hidden_size << " (" << c.num_attention_heads << " heads, " << c.num_key_value_heads
    << " kv heads, head dim " << c.resolved_head_dim() << ")\n";
  o << "vocabulary        " << c.vocab_size << "\n";
  // Group equal layers: "layers 0-15: 128 experts (127 routed + 1 shared)".
  auto specs = c.layers();
  for (size_t a = 0; a < specs.size();) {
    size_t b = a;
    while (b + 1 < specs.size() && specs[b + 1].num_experts == specs[a].num_experts &&
           specs[b + 1].num_shared_experts == specs[a].num_shared_experts)
      ++b;
    std::string label = a == b ? cat("layer ", a) : cat("layers ", a, "-", b);
    o << label << std::string(label.size() < 18 ? 18 - label.size() : 1, ' ');
    if (specs[a].dense()) o << "dense MLP (" << c.dense_intermediate_size.value_or(0) << ")\n";
    else
      o << specs[a].num_experts << " experts (" << specs[a].num_routed() << " routed + " << specs[a].num_shared_experts
        << " shared), expert FFN " << c.intermediate_size << "\n";
    a = b + 1;
  }
  o << "top-k             " << c.num_experts_per_tok << (c.num_shared_experts ? " (shared experts included)" : "")
    << (c.norm_topk_prob ? ", normalised" : "") << "\n";
  o << "parameters        " << human_count(double(s.params.total)) << " total, " << human_count(double(s.params.active))
    << " active (" << human_count(double(s.params.active_non_embedding())) << " without embeddings)\n";
  o << "dtypes            ";
  bool first = true;
  for (const auto& [d, n] : s.bytes_by_dtype) o << (first ? "" : ", ") << d << " " << human_bytes(double(n)), first = false;
  o << "\n";
  o << "on disk           " << human_bytes(double(s.bytes_on_disk)) << " in " << s.weight_files << " file"
    << (s.weight_files == 1 ? "" : "s") << ", experts " << layout_name(s.layout) << "\n";
  if (s.provenance) {
    o << "made by           emo " << s.provenance->command << " (" << s.provenance->emo_version << ", "
      << s.provenance->finished << ")\n";
    o << "content hash      " << s.provenance->output_hash << "\n";
    for (const auto& in : s.provenance->inputs) o << "  from " << in.role << ": " << in.path << " " << in.hash << "\n";
  } else {
    o << "provenance        none (not made by emo)\n";
  }
  return o.str();
}

std::string model_card(const std::string& title, const ModelConfig& config, const Provenance& provenance,
                       const std::string& description) {
  ParamCounts p = count_params(config);
  std::ostringstream o;
  o << "# " << title << "\n\n" << description << "\n\n";
  o << "- model type: `" << config.model_type() << "`, " << config.num_hidden_layers << " layers, hidden "
    << config.hidden_size << ", top-" << config.num_experts_per_tok << "\n";
  o << "- parameters: " << human_count(double(p.total)) << " total, " << human_count(double(p.active)) << " active\n";
  o << "- content hash: `" << provenance.output_hash << "`\n";
  o << "- made by: `emo " << provenance.command << "` (emo " << provenance.emo_version << ") on " << provenance.finished
    << "\n";
  for (const auto& in : provenance.inputs) o << "- input " << in.role << ": `" << in.path << "` (`" << in.hash << "`)\n";
  o << "\n## How it was made\n\n`provenance.yaml` in this directory holds the exact settings, the inputs' hashes and "
       "the lineage back to the roots (`emo lineage` prints it).\n";
  o << "\n## How to load it\n\n```sh\nemo inspect <this directory>\nemo generate --model <this directory> --prompt "
       "\"Question: 2 + 3 = ?\\nAnswer:\"\n```\n\n";
  if (config.family->hf_class.empty())
    o << "With Hugging Face transformers, load it with the EMO modeling code (allenai/EMO, "
         "`src/hf_trust_remote_code/emo`) placed beside the weights.\n";
  else
    o << "With Hugging Face transformers: `AutoModelForCausalLM.from_pretrained(<this directory>)` (`"
      << config.family->hf_class << "`).\n";
  o << "\n## Config\n\n```json\n" << config.to_json().dump(2) << "\n```\n";
  return o.str();
}

}  // namespace emo
