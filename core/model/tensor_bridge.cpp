#include "core/model/tensor_bridge.h"

#include "core/util/error.h"

namespace emo {

torch::ScalarType to_torch(DType t) {
  switch (t) {
    case DType::F64: return torch::kFloat64;
    case DType::F32: return torch::kFloat32;
    case DType::F16: return torch::kFloat16;
    case DType::BF16: return torch::kBFloat16;
    case DType::I64: return torch::kInt64;
    case DType::I32: return torch::kInt32;
    case DType::I16: return torch::kInt16;
    case DType::I8: return torch::kInt8;
    case DType::U8: return torch::kUInt8;
    case DType::BOOL: return torch::kBool;
    default: fail("", "", "dtype ", dtype_name(t), " has no LibTorch equivalent here");
  }
}

DType from_torch(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat64: return DType::F64;
    case torch::kFloat32: return DType::F32;
    case torch::kFloat16: return DType::F16;
    case torch::kBFloat16: return DType::BF16;
    case torch::kInt64: return DType::I64;
    case torch::kInt32: return DType::I32;
    case torch::kInt16: return DType::I16;
    case torch::kInt8: return DType::I8;
    case torch::kUInt8: return DType::U8;
    case torch::kBool: return DType::BOOL;
    default: fail("", "", "LibTorch dtype ", c10::toString(t), " cannot be stored");
  }
}

torch::Tensor tensor_from_view(const TensorView& v) {
  auto st = to_torch(v.dtype);
  std::vector<int64_t> shape(v.shape.begin(), v.shape.end());
  auto options = torch::TensorOptions().dtype(st).device(torch::kCPU);
  if (reinterpret_cast<uintptr_t>(v.data) % dtype_size(v.dtype) != 0) {
    // safetensors does not promise alignment; LibTorch kernels assume it.
    auto t = torch::empty(shape, options);
    std::memcpy(t.data_ptr(), v.data, v.nbytes);
    return t;
  }
  auto owner = v.owner;  // captured: the mapping outlives the tensor
  return torch::from_blob(const_cast<uint8_t*>(v.data), shape, [owner](void*) {}, options);
}

torch::Tensor load_tensor(const TensorView& v, torch::ScalarType dtype, const torch::Device& device) {
  torch::Tensor t = tensor_from_view(v);
  // .to() copies when dtype or device differ; clone() when neither does, so the result
  // owns its memory and can be trained in place.
  torch::Tensor out = t.to(device, dtype);
  if (out.data_ptr() == t.data_ptr()) out = out.clone();
  return out;
}

torch::Tensor to_storage(const torch::Tensor& t, DType dtype) {
  return t.detach().to(torch::kCPU, to_torch(dtype)).contiguous();
}

void write_tensors(const fs::path& file, const NamedTensors& tensors, const Metadata& metadata) {
  std::vector<TensorSpec> specs;
  std::vector<torch::Tensor> bytes;
  for (const auto& [name, t] : tensors) {
    bytes.push_back(t.to(torch::kCPU).contiguous());
    specs.push_back({name, from_torch(t.scalar_type()), bytes.back().sizes().vec()});
  }
  SafetensorsWriter w(file, specs, metadata);
  for (size_t i = 0; i < specs.size(); ++i) w.write(specs[i].name, bytes[i].data_ptr(), size_t(specs[i].nbytes()));
  w.finish();
}

}  // namespace emo
