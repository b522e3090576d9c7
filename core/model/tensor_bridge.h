// Between checkpoint bytes and LibTorch tensors: dtype mapping, zero-copy views of mapped
// tensors (the mapping stays alive as long as the tensor), and tensors back to bytes.
#pragma once

#include <torch/torch.h>

#include "core/io/safetensors.h"

namespace emo {

torch::ScalarType to_torch(DType t);  // emo::Error for dtypes LibTorch lacks
DType from_torch(torch::ScalarType t);

// A CPU tensor over the view's bytes without copying (read-only use!), or a copy when
// the bytes are misaligned for the element type.
torch::Tensor tensor_from_view(const TensorView& v);
// A tensor owning its memory, converted to `dtype` and moved to `device`.
torch::Tensor load_tensor(const TensorView& v, torch::ScalarType dtype, const torch::Device& device);

// The contiguous CPU bytes of a tensor in `dtype` (for writing checkpoints).
torch::Tensor to_storage(const torch::Tensor& t, DType dtype);

// One .safetensors file of these tensors, in this order, each in its own dtype (moved to
// the CPU as needed), with `metadata`; fsynced. The caller renames it into place.
using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;
void write_tensors(const fs::path& file, const NamedTensors& tensors, const Metadata& metadata = {});

}  // namespace emo
