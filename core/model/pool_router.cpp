#include "core/model/pool_router.h"

#include <algorithm>
#include <limits>

#include "core/util/error.h"
#include "core/util/splitmix.h"

namespace emo {

namespace {

int64_t routed_top_k(const ModelConfig& c, const LayerSpec& s) {
  return std::min(c.num_experts_per_tok - s.num_shared_experts, s.num_routed());
}

}  // namespace

PoolRange default_pool_range(const ModelConfig& config, int64_t divisor) {
  PoolRange r{std::numeric_limits<int64_t>::max(), 0};
  for (const LayerSpec& s : config.layers()) {
    if (s.dense()) continue;
    const int64_t R = s.num_routed();
    r.min = std::min(r.min, std::max(routed_top_k(config, s), (R + divisor - 1) / divisor));
    r.max = std::max(r.max, R);
  }
  if (r.max == 0) fail("--router", "emo", "the model has no MoE layer");
  r.min = std::min(r.min, r.max);
  return r;
}

void validate_pool_range(const ModelConfig& config, const PoolRange& range, const std::string& flag) {
  if (!(range.free >= 0 && range.free < 1)) fail("--pool-free", cat(range.free), "is not in [0, 1)");
  if (range.min > range.max) fail(flag, std::to_string(range.min), "is larger than --pool-max ", range.max);
  const auto specs = config.layers();
  for (size_t l = 0; l < specs.size(); ++l) {
    const LayerSpec& s = specs[l];
    if (s.dense()) continue;
    if (!s.always_active.empty())
      fail("--router", "emo", "layer ", l, " has always-active experts; the document pool is defined for shared "
           "experts (the last router columns) only");
    const int64_t k = routed_top_k(config, s);
    if (range.min < k)
      fail(flag, std::to_string(range.min), "is smaller than the routed top-k (", k, ") of layer ", l,
           ": top-k would pick experts outside the pool");
  }
}

int64_t draw_pool_size(uint64_t seed, int64_t step, int64_t document, int layer, const PoolRange& range) {
  uint64_t h = splitmix64(seed);
  h = splitmix64(h ^ uint64_t(step));
  h = splitmix64(h ^ uint64_t(document));
  if (range.free > 0) {
    // A key no layer index takes, so the document is free in every layer or in none.
    const double u = double(splitmix64(h ^ ~uint64_t(0)) >> 11) * 0x1.0p-53;  // uniform in [0, 1)
    if (u < range.free) return kNoPool;
  }
  h = splitmix64(h ^ uint64_t(int64_t(layer)));
  const uint64_t span = uint64_t(range.max - range.min + 1);
  return range.min + int64_t(h % span);
}

torch::Tensor document_pool_mask(const torch::Tensor& routed_logits, const torch::Tensor& document_ids, int64_t rows,
                                 const std::function<int64_t(int64_t document)>& pool_of) {
  torch::NoGradGuard no_grad;
  const int64_t N = routed_logits.size(0), R = routed_logits.size(1);
  if (rows <= 0 || N % rows != 0) fail("pool router", "", "logits of ", N, " tokens do not split into ", rows, " rows");
  const int64_t T = N / rows;
  // Pieces: runs of one document id inside a row (a document continued from the previous
  // row is a new piece with its own pool, as the reference's per-row boundaries make it).
  auto docs = document_ids.defined() ? document_ids.reshape({rows, T}).to(torch::kCPU, torch::kInt64)
                                     : torch::zeros({rows, T}, torch::kInt64);
  auto starts = torch::ones({rows, T}, torch::kBool);
  if (T > 1) starts.narrow(1, 1, T - 1).copy_(docs.narrow(1, 1, T - 1) != docs.narrow(1, 0, T - 1));
  auto piece = starts.reshape({-1}).to(torch::kInt64).cumsum(0) - 1;  // [N]
  const int64_t P = piece[N - 1].item<int64_t>() + 1;
  auto piece_doc = docs.reshape({-1}).masked_select(starts.reshape({-1}));  // [P]

  std::vector<int64_t> sizes(static_cast<size_t>(P));
  bool any = false;
  const int64_t* pd = piece_doc.data_ptr<int64_t>();
  for (int64_t p = 0; p < P; ++p) sizes[size_t(p)] = pool_of(pd[p]), any = any || sizes[size_t(p)] < R;
  if (!any) return {};

  // Each piece's routed probabilities summed over its tokens rank its experts.
  auto probs = torch::softmax(routed_logits.to(torch::kFloat32), 1).to(torch::kCPU);
  auto summed = torch::zeros({P, R}, probs.options()).index_add_(0, piece, probs);
  auto in_pool = torch::ones({P, R}, torch::kBool);
  for (int64_t p = 0; p < P; ++p) {
    const int64_t keep = sizes[size_t(p)];
    if (keep >= R) continue;
    auto kept = std::get<1>(summed[p].topk(keep));
    in_pool[p].fill_(false).index_fill_(0, kept, true);
  }
  auto allowed = in_pool.index_select(0, piece);  // [N, R]
  return torch::zeros({N, R}, routed_logits.options().dtype(torch::kFloat32))
      .masked_fill(allowed.logical_not().to(routed_logits.device()), -std::numeric_limits<float>::infinity());
}

DocumentPoolRouter::DocumentPoolRouter(const ModelConfig& config, PoolRange range, uint64_t seed, const std::string& flag)
    : layers_(config.layers()), range_(range), seed_(seed) {
  validate_pool_range(config, range_, flag);
  control_.unpooled_gate = range_.unpooled_gate;
  control_.pool = [this](int layer, const torch::Tensor& logits, const torch::Tensor& docs) {
    return mask(layer, logits, docs);
  };
}

torch::Tensor DocumentPoolRouter::mask(int layer, const torch::Tensor& logits, const torch::Tensor& docs) const {
  const LayerSpec& s = layers_.at(size_t(layer));
  const int64_t R = s.num_routed(), S = s.num_shared_experts;
  const int64_t step = step_.load();
  const int64_t rows = docs.defined() ? docs.size(0) : 1;
  auto routed = document_pool_mask(logits.narrow(1, 0, R), docs, rows, [&](int64_t doc) {
    return draw_pool_size(seed_, step, doc, layer, range_);
  });
  if (!routed.defined() || S == 0) return routed;
  // Shared columns are never masked: those experts are always on.
  return torch::cat({routed, torch::zeros({routed.size(0), S}, routed.options())}, 1);
}

}  // namespace emo
