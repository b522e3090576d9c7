// The parts of an MoE model: one vocabulary for what trains (`emo finetune --train`), what
// a merge carries back (`emo merge --shared --router-rows --non-moe`) and what `emo diff`
// reports as changed.
//
//   routed_experts  the experts a router chooses among (EMO's first R columns, OLMoE's,
//                   Mixtral's and Qwen's experts)
//   shared_experts  experts every token uses: EMO's last columns of the expert stacks,
//                   Qwen2-MoE's shared_expert MLP and its shared_expert_gate
//   router          the router (one row per expert)
//   attention       q/k/v/o projections and their biases
//   norms           every RMSNorm: before attention, before the feed-forward block, q/k, final
//   embeddings      the token embedding
//   head            lm_head (absent when tied to the embedding)
//   dense_mlp       the MLP of a dense (non-MoE) layer
//
// A tensor belongs to one part, except the stacked experts of a model in memory
// ([E, ...], shared experts last), whose rows split between routed and shared.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "core/checkpoint/arch.h"
#include "core/checkpoint/config.h"

namespace emo {

enum class Part : uint8_t { RoutedExperts, SharedExperts, Router, Attention, Norms, Embeddings, Head, DenseMlp };

struct PartInfo {
  Part part;
  const char* name;
  const char* description;
};
const std::vector<PartInfo>& moe_parts();  // in enum order
const char* part_name(Part p);

// A set of parts (a bit per part).
class PartSet {
 public:
  constexpr PartSet() = default;
  PartSet(std::initializer_list<Part> parts);
  static PartSet every();
  // What is not the MoE block: attention, norms, embeddings, head, dense MLPs.
  static PartSet non_moe();
  bool has(Part p) const { return (bits_ >> unsigned(p)) & 1u; }
  bool empty() const { return bits_ == 0; }
  PartSet& add(Part p) { bits_ |= uint16_t(1u << unsigned(p)); return *this; }
  PartSet& add(PartSet s) { bits_ |= s.bits_; return *this; }
  PartSet& remove(PartSet s) { bits_ &= uint16_t(~s.bits_); return *this; }
  bool operator==(const PartSet& o) const { return bits_ == o.bits_; }
  std::vector<std::string> names() const;  // in enum order
  std::string str() const;                 // "routed_experts, router"; "nothing" when empty

 private:
  uint16_t bits_ = 0;
};

// The part of a canonical (per-expert) tensor; `specs` are the model's layers
// (ModelConfig::layers(), computed once by the caller).
Part part_of(const CanonicalTensor& t, const std::vector<LayerSpec>& specs);
// The part of a tensor of any role but Role::Expert, whose part depends on the expert.
Part part_of_role(Role r);

// Rows [begin, end) of a tensor in memory that belong to one part.
struct PartRows {
  Part part;
  int64_t begin = 0, end = 0;
};
// How the rows of a tensor of `role` with `rows` rows split into parts: stacked experts
// [E, ...] into routed rows then shared ones (empty ranges left out), anything else whole.
std::vector<PartRows> part_rows(Role role, int64_t rows, const LayerSpec& spec);

}  // namespace emo
