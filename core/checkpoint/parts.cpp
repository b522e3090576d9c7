#include "core/checkpoint/parts.h"

namespace emo {

const std::vector<PartInfo>& moe_parts() {
  static const std::vector<PartInfo> parts{
      {Part::RoutedExperts, "routed_experts", "the experts a router chooses among"},
      {Part::SharedExperts, "shared_experts",
       "experts every token uses (EMO's last expert columns; Qwen2-MoE's shared_expert and its gate)"},
      {Part::Router, "router", "the router, one row per expert"},
      {Part::Attention, "attention", "q/k/v/o projections and their biases"},
      {Part::Norms, "norms", "every RMSNorm (before attention, before the feed-forward block, q/k, final)"},
      {Part::Embeddings, "embeddings", "the token embedding"},
      {Part::Head, "head", "lm_head (absent when tied to the embedding)"},
      {Part::DenseMlp, "dense_mlp", "the MLP of a dense (non-MoE) layer"},
  };
  return parts;
}

const char* part_name(Part p) { return moe_parts()[size_t(p)].name; }

PartSet::PartSet(std::initializer_list<Part> parts) {
  for (Part p : parts) add(p);
}

PartSet PartSet::every() {
  PartSet s;
  for (const auto& info : moe_parts()) s.add(info.part);
  return s;
}

PartSet PartSet::non_moe() { return {Part::Attention, Part::Norms, Part::Embeddings, Part::Head, Part::DenseMlp}; }

std::vector<std::string> PartSet::names() const {
  std::vector<std::string> out;
  for (const auto& info : moe_parts())
    if (has(info.part)) out.push_back(info.name);
  return out;
}

std::string PartSet::str() const {
  std::string out;
  for (const auto& name : names()) out += (out.empty() ? "" : ", ") + name;
  return out.empty() ? "nothing" : out;
}

Part part_of_role(Role r) {
  switch (r) {
    case Role::Embedding: return Part::Embeddings;
    case Role::LmHead: return Part::Head;
    case Role::FinalNorm:
    case Role::AttnNorm:
    case Role::MlpNorm:
    case Role::QKNorm: return Part::Norms;
    case Role::Attention: return Part::Attention;
    case Role::Router: return Part::Router;
    case Role::DenseMlp: return Part::DenseMlp;
    case Role::Expert: return Part::RoutedExperts;  // callers with an expert index use part_of
    case Role::SharedExpert:
    case Role::SharedExpertGate: return Part::SharedExperts;
  }
  return Part::Attention;
}

Part part_of(const CanonicalTensor& t, const std::vector<LayerSpec>& specs) {
  if (t.role != Role::Expert) return part_of_role(t.role);
  return t.expert < specs[size_t(t.layer)].num_routed() ? Part::RoutedExperts : Part::SharedExperts;
}

std::vector<PartRows> part_rows(Role role, int64_t rows, const LayerSpec& spec) {
  if (role != Role::Expert) return {{part_of_role(role), 0, rows}};
  // EMO's shared experts are the last rows of the stacks.
  const int64_t routed = rows - spec.num_shared_experts;
  std::vector<PartRows> out;
  if (routed > 0) out.push_back({Part::RoutedExperts, 0, routed});
  if (rows > routed) out.push_back({Part::SharedExperts, routed, rows});
  return out;
}

}  // namespace emo
