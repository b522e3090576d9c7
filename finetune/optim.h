// AdamW (decoupled weight decay, as torch.optim.AdamW) over flat float32 state, and the
// learning-rate schedules of transformers' Trainer (linear, cosine or constant after a warm-up,
// and warmup-stable-decay).
//
// The optimizer updates *segments*: a 1-D float32 view of (part of) a trainable slice,
// its gradient, and the matching range of the flat moment buffers. Without ZeRO a segment
// is a whole slice; with ZeRO-1 a rank's segments are the pieces of the flat parameter
// vector it owns. Either way the per-element arithmetic is the same.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

namespace emo {

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
};

struct AdamSegment {
  torch::Tensor value;  // 1-D float32 view of the parameter elements
  torch::Tensor grad;   // 1-D, same length (float32)
  int64_t state_offset = 0;  // where its moments start in the flat state
  bool decay = true;
};

class AdamW {
 public:
  AdamW() = default;
  // `state_size` elements of exp_avg and exp_avg_sq (zeros) on `device`.
  AdamW(int64_t state_size, const AdamWOptions& options, torch::Device device);

  // One update of every segment with learning rate `lr` (step count += 1 first).
  void step(const std::vector<AdamSegment>& segments, double lr);

  int64_t steps() const { return steps_; }
  void set_steps(int64_t s) { steps_ = s; }
  torch::Tensor& exp_avg() { return m_; }
  torch::Tensor& exp_avg_sq() { return v_; }
  const AdamWOptions& options() const { return options_; }

 private:
  AdamWOptions options_;
  torch::Tensor m_, v_;
  int64_t steps_ = 0;
};

// Wsd: warm-up, the peak held, then a linear fall to the final rate over the last `decay`
// steps (transformers' get_wsd_schedule with decay_type linear; OLMo-core's WSD, which
// allenai/EMO's 64-expert runs use).
enum class Schedule { Linear, Cosine, Constant, Wsd };
Schedule parse_schedule(const std::string& name);
const char* schedule_name(Schedule s);

struct LrSchedule {
  Schedule kind = Schedule::Linear;
  double peak = 5e-5;
  int64_t warmup = 0, total = 1;
  double final_ratio = 0.0;  // lr at the end = peak * final_ratio
  int64_t decay = 0;         // Wsd: steps of the final fall
  // The learning rate of update `step` (0-based), as transformers' LambdaLR gives it: the
  // first update of a warm-up runs at 0.
  double at(int64_t step) const;
};

// Global gradient norm helpers: the sum of squares of the given tensors (float64 scalar
// on the tensors' device, accumulated in float32 per tensor as torch does).
torch::Tensor sum_of_squares(const std::vector<torch::Tensor>& grads);

}  // namespace emo
