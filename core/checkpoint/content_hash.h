// The canonical content hash of a checkpoint. SHA-256 over:
//   the version tag, the model-defining config (canonical JSON, defaults resolved), and
//   for every tensor in canonical per-expert form, in name order:
//   name, dtype, shape, byte count, SHA-256 of the tensor's bytes.
// It does not depend on sharding, file order or the fused/per-expert layout, and it
// changes when top_k or any weight changes. Hashing per tensor lets writers compute it
// while they stream (no second read of a 28 GB output) and lets `emo verify` name the
// tensor that changed.
#pragma once

#include <functional>
#include <map>
#include <string>

#include "core/checkpoint/checkpoint.h"
#include "core/io/sha256.h"

namespace emo {

inline constexpr const char* kContentHashVersion = "emo-content-hash-v1";

std::string combine_content_hash(const ModelConfig& config, const TensorDigests& digests);

// Reads every tensor. progress(bytes_done, bytes_total).
TensorDigests tensor_digests(const Checkpoint& ck, const std::function<void(uint64_t, uint64_t)>& progress = {});
std::string content_hash(const Checkpoint& ck, const std::function<void(uint64_t, uint64_t)>& progress = {});

// The hash an input checkpoint is recorded under (a parent in provenance, the model of
// routing statistics): its provenance's output hash when it has one (emo verify checks
// those), else computed from the weights; `recompute` always computes.
std::string parent_content_hash(const Checkpoint& ck, bool recompute = false);

}  // namespace emo
