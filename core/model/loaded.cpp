#include "core/model/loaded.h"

#include "core/model/compat.h"
#include "core/model/generate.h"
#include "core/util/error.h"

namespace emo {

std::string no_cuda_reason() {
  if (!at::globalContext().hasCUDA())
    return "this emo is built against a CPU-only LibTorch (" + compat::torch_version() +
           "): build it against PyTorch's CUDA LibTorch (scripts/build --torch pypi) to use a GPU";
  return "LibTorch " + compat::torch_version() + " (built with CUDA) sees no CUDA device: no GPU, or no driver";
}

LoadOptions load_options_for(const std::string& device) {
  LoadOptions o;
  bool cuda = device == "cuda" || (device == "auto" && torch::cuda::is_available());
  if (device != "auto" && device != "cpu" && device != "cuda") fail("--device", device, "expected auto, cpu or cuda");
  if (cuda && !torch::cuda::is_available()) fail("--device", device, no_cuda_reason());
  if (cuda) {
    o.device = torch::Device(torch::kCUDA);
    o.dtype = torch::kBFloat16;  // GPUs compute in bf16; CPUs in fp32
  }
  return o;
}

LoadedModel load_model(const std::string& dir, const std::string& experts_file, const std::string& device,
                       const std::string& tokenizer_path, bool need_tokenizer) {
  LoadedModel m;
  m.checkpoint = std::make_unique<Checkpoint>(Checkpoint::open(dir));
  if (!experts_file.empty()) {
    m.experts = ExpertSelection::load(experts_file);
    m.experts.validate(m.checkpoint->config(), experts_file);
    m.routing = routing_for(m.experts, m.checkpoint->config());
    m.restricted = true;
  }
  if (need_tokenizer) {
    std::string path = tokenizer_path.empty() ? (fs::path(dir) / "tokenizer.json").string() : tokenizer_path;
    std::error_code ec;
    if (!fs::exists(path, ec)) fail(path, "", "no tokenizer (pass --tokenizer PATH)");
    m.tokenizer = std::make_unique<Tokenizer>(Tokenizer::load(path));
  }
  m.model = std::make_unique<Model>(Model::load(*m.checkpoint, load_options_for(device)));
  return m;
}

const RoutingControl* routing_of(const LoadedModel& m) { return m.restricted ? &m.routing : nullptr; }

FieldSpec experts_field() {
  return field("experts", FieldSpec::Kind::String,
               "Experts file (JSON/YAML, layer -> kept routed expert ids): run the full model restricted to that module")
      .reads();
}

FieldSpec device_field() {
  return field("device", FieldSpec::Kind::String, "auto, cpu or cuda (auto: cuda when available)");
}

FieldSpec tokenizer_field() {
  return field("tokenizer", FieldSpec::Kind::String, "tokenizer.json (default: the model's)").reads();
}

}  // namespace emo
