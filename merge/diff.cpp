#include "merge/diff.h"

#include <cmath>
#include <cstring>
#include <set>

namespace emo {

namespace {

TensorDiff compare(const TensorView& a, const TensorView& b) {
  TensorDiff d{a.name, "identical"};
  if (a.shape != b.shape) return {a.name, "shape"};
  if (a.dtype == b.dtype && a.nbytes == b.nbytes && std::memcmp(a.data, b.data, a.nbytes) == 0) return d;
  if (!dtype_is_float(a.dtype) || !dtype_is_float(b.dtype)) return {a.name, a.dtype == b.dtype ? "different" : "dtype"};
  d.status = "different";
  const uint64_t count = a.nbytes / dtype_size(a.dtype), chunk = uint64_t(1) << 20;
  std::vector<float> x, y;
  double delta2 = 0, norm2 = 0;
  for (uint64_t off = 0; off < count; off += chunk) {
    size_t n = size_t(std::min(chunk, count - off));
    x.resize(n), y.resize(n);
    convert_to_f32(a.data + off * dtype_size(a.dtype), n, a.dtype, x.data());
    convert_to_f32(b.data + off * dtype_size(b.dtype), n, b.dtype, y.data());
    for (size_t i = 0; i < n; ++i) {
      double diff = double(y[i]) - double(x[i]);
      d.max_abs = std::max(d.max_abs, std::abs(diff));
      delta2 += diff * diff;
      norm2 += double(x[i]) * double(x[i]);
    }
  }
  d.relative_change = norm2 > 0 ? std::sqrt(delta2 / norm2) : (delta2 > 0 ? INFINITY : 0);
  return d;
}

}  // namespace

DiffReport diff_checkpoints(const Checkpoint& a, const Checkpoint& b) {
  DiffReport r;
  std::set<std::string> names_b;
  for (const auto& t : b.tensors()) names_b.insert(t.name);
  std::set<std::string> names_a;
  const std::vector<LayerSpec> specs_a = a.config().layers(), specs_b = b.config().layers();
  auto count = [&](Part part, bool changed) {
    auto& c = r.parts[part];
    ++c.tensors;
    if (changed) ++c.changed;
  };
  for (const auto& t : a.tensors()) {
    names_a.insert(t.name);
    if (!names_b.count(t.name)) {
      r.tensors.push_back({t.name, "only_in_a"});
      ++r.only_a;
      count(part_of(t, specs_a), true);
      continue;
    }
    TensorDiff d = compare(a.view(t), b.view(t.name));
    if (d.status == "identical") ++r.identical;
    else if (d.status == "different") ++r.different;
    else ++r.incompatible;
    count(part_of(t, specs_a), d.status != "identical");
    r.tensors.push_back(d);
  }
  for (const auto& t : b.tensors())
    if (!names_a.count(t.name)) r.tensors.push_back({t.name, "only_in_b"}), ++r.only_b, count(part_of(t, specs_b), true);
  return r;
}

PartSet DiffReport::changed_parts() const {
  PartSet s;
  for (const auto& [part, c] : parts)
    if (c.changed) s.add(part);
  return s;
}

Json DiffReport::to_json(bool list_identical) const {
  Json list = Json::array();
  for (const auto& t : tensors) {
    if (t.status == "identical" && !list_identical) continue;
    Json e = {{"name", t.name}, {"status", t.status}};
    if (t.status == "different") e["max_abs_diff"] = t.max_abs, e["relative_change"] = t.relative_change;
    list.push_back(e);
  }
  Json by_part = Json::object();
  for (const auto& [part, c] : parts) by_part[part_name(part)] = {{"tensors", c.tensors}, {"changed", c.changed}};
  return {{"identical", all_identical()}, {"tensors_identical", identical}, {"tensors_different", different},
          {"only_in_a", only_a},          {"only_in_b", only_b},             {"incompatible", incompatible},
          {"parts", by_part},             {"tensors", list}};
}

}  // namespace emo
