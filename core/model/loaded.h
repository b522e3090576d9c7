// A model ready for inference: the checkpoint, weights on the device (fp32 on CPU, bf16
// on GPU), its tokenizer (tokenizer.json in the model directory unless another is named),
// and a routing restriction from an experts file, if given.
#pragma once

#include <memory>
#include <string>

#include "core/checkpoint/checkpoint.h"
#include "core/checkpoint/experts.h"
#include "core/model/model.h"
#include "core/text/tokenizer.h"
#include "core/util/fields.h"

namespace emo {

struct LoadedModel {
  std::unique_ptr<Checkpoint> checkpoint;
  std::unique_ptr<Model> model;
  std::unique_ptr<Tokenizer> tokenizer;
  ExpertSelection experts;
  RoutingControl routing;
  bool restricted = false;
};
LoadedModel load_model(const std::string& dir, const std::string& experts_file = "", const std::string& device = "auto",
                       const std::string& tokenizer_path = "", bool need_tokenizer = true);
const RoutingControl* routing_of(const LoadedModel& m);
// "auto": cuda when LibTorch sees a GPU, else cpu.
LoadOptions load_options_for(const std::string& device);
// The rows of every request that loads a model (core/util/fields.h), said once.
FieldSpec experts_field();    // --experts FILE: run the full model restricted to that module
FieldSpec device_field();     // --device auto|cpu|cuda
FieldSpec tokenizer_field();  // --tokenizer FILE instead of the model's

// Why --device cuda cannot be had here: a CPU-only LibTorch, or no GPU the CUDA one sees.
std::string no_cuda_reason();

}  // namespace emo
