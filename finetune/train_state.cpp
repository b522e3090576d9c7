#include "finetune/train_state.h"

#include <cstdio>
#include <fstream>
#include <sstream>

#include "core/io/safetensors.h"
#include "core/model/tensor_bridge.h"
#include "core/util/error.h"

namespace emo {

fs::path checkpoints_root(const fs::path& out) { return out / "checkpoints"; }

fs::path checkpoint_dir(const fs::path& out, int64_t step) {
  char name[32];
  std::snprintf(name, sizeof name, "step-%06lld", (long long)step);
  return checkpoints_root(out) / name;
}

std::map<int64_t, fs::path> list_checkpoints(const fs::path& out) {
  std::map<int64_t, fs::path> found;
  std::error_code ec;
  fs::path root = checkpoints_root(out);
  if (!fs::is_directory(root, ec)) return found;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    std::string name = entry.path().filename().string();
    if (name.rfind("step-", 0) != 0 || name.find(".tmp") != std::string::npos) continue;
    std::string digits = name.substr(5);
    if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos) continue;
    if (!fs::exists(entry.path() / kTrainerStateFile, ec)) continue;
    found[std::stoll(digits)] = entry.path();
  }
  return found;
}

std::optional<fs::path> latest_checkpoint(const fs::path& out) {
  auto all = list_checkpoints(out);
  if (all.empty()) return std::nullopt;
  return all.rbegin()->second;
}

void write_optimizer_state(const fs::path& file, const std::vector<TrainSlice>& slices,
                           const std::vector<int64_t>& offsets, const torch::Tensor& exp_avg,
                           const torch::Tensor& exp_avg_sq, int64_t steps) {
  NamedTensors tensors;
  for (size_t i = 0; i < slices.size(); ++i)
    for (const auto* which : {&exp_avg, &exp_avg_sq})
      tensors.emplace_back(std::string(which == &exp_avg ? "exp_avg." : "exp_avg_sq.") + slices[i].name,
                           which->narrow(0, offsets[i], slices[i].numel()).view(slices[i].value().sizes()));
  write_tensors(file, tensors, {{"format", "emo-adamw-v1"}, {"step", std::to_string(steps)}});
}

void read_optimizer_state(const fs::path& file, const std::vector<TrainSlice>& slices,
                          const std::vector<int64_t>& offsets, torch::Tensor& exp_avg, torch::Tensor& exp_avg_sq) {
  auto st = SafetensorsFile::open(file.string());
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < slices.size(); ++i) {
    auto shape = slices[i].value().sizes().vec();
    for (auto* which : {&exp_avg, &exp_avg_sq}) {
      std::string name = std::string(which == &exp_avg ? "exp_avg." : "exp_avg_sq.") + slices[i].name;
      const TensorInfo* info = st->find(name);
      if (!info)
        fail(file.string(), name, "missing: the checkpoint trained other tensors (another model or --train mode)");
      if (info->dtype != DType::F32 || info->shape != Shape(shape.begin(), shape.end()))
        fail(file.string(), name, "shape ", shape_str(info->shape), " but this run trains ",
             shape_str(Shape(shape.begin(), shape.end())));
      auto t = tensor_from_view(st->view(*info)).reshape({-1});
      which->narrow(0, offsets[i], slices[i].numel()).copy_(t);
    }
  }
}

namespace {
std::string short_value(const Json& j) {
  std::string s = j.dump();
  return s.size() > 80 ? s.substr(0, 77) + "..." : s;
}
}  // namespace

std::vector<std::string> settings_differences(const Json& before, const Json& now) {
  std::vector<std::string> out;
  std::vector<std::string> keys;
  for (auto it = before.begin(); it != before.end(); ++it) keys.push_back(it.key());
  for (auto it = now.begin(); it != now.end(); ++it)
    if (!before.contains(it.key())) keys.push_back(it.key());
  for (const auto& k : keys) {
    Json a = before.contains(k) ? before[k] : Json("(unset)");
    Json b = now.contains(k) ? now[k] : Json("(unset)");
    if (a != b) out.push_back(k + ": " + short_value(a) + " (checkpoint) vs " + short_value(b) + " (now)");
  }
  return out;
}

void truncate_metrics(const fs::path& file, int64_t step) {
  std::error_code ec;
  if (!fs::exists(file, ec)) return;
  std::ifstream in(file);
  std::string line, kept;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    try {
      Json j = parse_json(line, file.string());
      if (j.contains("step") && j["step"].is_number_integer() && j["step"].get<int64_t>() > step) continue;
    } catch (const Error&) {
      continue;  // a line cut short by the crash
    }
    kept += line + "\n";
  }
  write_file_atomic(file, kept);
}

}  // namespace emo
