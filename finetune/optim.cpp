#include "finetune/optim.h"

#include <ATen/Parallel.h>

#include <cmath>

#include "core/util/error.h"
#include "finetune/adamw_kernel.h"

namespace emo {

AdamW::AdamW(int64_t state_size, const AdamWOptions& options, torch::Device device) : options_(options) {
  auto o = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  m_ = torch::zeros({state_size}, o);
  v_ = torch::zeros({state_size}, o);
}

namespace {

void adamw_cpu(float* p, const float* g, float* m, float* v, int64_t n, float decay_factor, float b1, float b2,
               float step_size, float bc2_sqrt, float eps) {
  at::parallel_for(0, n, 1 << 16, [&](int64_t begin, int64_t end) {
    adamw_range(p + begin, g + begin, m + begin, v + begin, end - begin, decay_factor, b1, b2, step_size, bc2_sqrt, eps);
  });
}

}  // namespace

void AdamW::step(const std::vector<AdamSegment>& segments, double lr) {
  torch::NoGradGuard no_grad;
  ++steps_;
  const double b1 = options_.beta1, b2 = options_.beta2;
  const double bc1 = 1.0 - std::pow(b1, double(steps_)), bc2 = 1.0 - std::pow(b2, double(steps_));
  const double step_size = lr / bc1, bc2_sqrt = std::sqrt(bc2);
  for (const AdamSegment& s : segments) {
    const int64_t n = s.value.numel();
    if (n == 0) continue;
    auto m = m_.narrow(0, s.state_offset, n), v = v_.narrow(0, s.state_offset, n);
    const double decay_factor = s.decay ? 1.0 - lr * options_.weight_decay : 1.0;
    torch::Tensor grad = s.grad.defined() ? s.grad : torch::zeros_like(s.value);
    if (s.value.device().is_cpu() && s.value.is_contiguous() && grad.is_contiguous() &&
        s.value.scalar_type() == torch::kFloat32 && grad.scalar_type() == torch::kFloat32) {
      adamw_cpu(s.value.data_ptr<float>(), grad.data_ptr<float>(), m.data_ptr<float>(), v.data_ptr<float>(), n,
                float(decay_factor), float(b1), float(b2), float(step_size), float(bc2_sqrt), float(options_.eps));
      continue;
    }
    // Other devices: the same update with tensor ops (torch.optim.AdamW, foreach=False).
    auto g = grad.to(torch::kFloat32);
    auto p = s.value;
    if (decay_factor != 1.0) p.mul_(decay_factor);
    m.mul_(b1).add_(g, 1.0 - b1);
    v.mul_(b2).addcmul_(g, g, 1.0 - b2);
    auto denom = (v.sqrt() / bc2_sqrt).add_(options_.eps);
    p.addcdiv_(m, denom, -step_size);
  }
}

Schedule parse_schedule(const std::string& name) {
  if (name == "linear") return Schedule::Linear;
  if (name == "cosine") return Schedule::Cosine;
  if (name == "constant") return Schedule::Constant;
  if (name == "wsd") return Schedule::Wsd;
  fail("--schedule", name, "expected linear, cosine, constant or wsd");
}

const char* schedule_name(Schedule s) {
  switch (s) {
    case Schedule::Linear: return "linear";
    case Schedule::Cosine: return "cosine";
    case Schedule::Constant: return "constant";
    case Schedule::Wsd: return "wsd";
  }
  return "?";
}

double LrSchedule::at(int64_t step) const {
  if (warmup > 0 && step < warmup) return peak * double(step) / double(warmup);
  if (kind == Schedule::Constant) return peak;
  // Where the fall starts and how long it lasts: right after the warm-up for linear and
  // cosine, the last `decay` steps for WSD (the peak held until then).
  const int64_t fall_start = kind == Schedule::Wsd ? std::max(warmup, total - decay) : warmup;
  if (step < fall_start) return peak;
  const int64_t fall = kind == Schedule::Wsd ? decay : total - warmup;
  double progress = std::min(1.0, double(step - fall_start) / double(std::max<int64_t>(1, fall)));
  double factor = kind == Schedule::Cosine ? std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * progress)))
                                           : std::max(0.0, 1.0 - progress);
  return peak * (final_ratio + (1.0 - final_ratio) * factor);
}

torch::Tensor sum_of_squares(const std::vector<torch::Tensor>& grads) {
  torch::NoGradGuard no_grad;
  torch::Tensor total;
  for (const auto& g : grads) {
    if (!g.defined() || g.numel() == 0) continue;
    auto s = g.to(torch::kFloat32).pow(2).sum().to(torch::kFloat64);
    total = total.defined() ? total + s : s;
  }
  if (!total.defined()) total = torch::zeros({}, torch::kFloat64);
  return total;
}

}  // namespace emo
