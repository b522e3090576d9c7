#include "core/checkpoint/checkpoint.h"

#include <algorithm>
#include <memory>
#include <set>
#include <utility>

#include "core/checkpoint/content_hash.h"
#include "core/util/error.h"
#include "core/util/worker.h"

namespace emo {

namespace {

bool any_moe_layer_has(const TensorStore& store, const ModelConfig& c, bool fused) {
  auto specs = c.layers();
  for (int l = 0; l < int(specs.size()); ++l) {
    if (specs[size_t(l)].dense()) continue;
    std::string name = fused ? fused_gate_up_name(*c.family, l) : expert_tensor_name(*c.family, l, 0, Proj::Gate);
    if (store.contains(name)) return true;
  }
  return false;
}

ExpertLayout detect_layout(const TensorStore& store, const ModelConfig& c, const std::string& dir) {
  bool per_expert = any_moe_layer_has(store, c, false);
  bool fused = any_moe_layer_has(store, c, true);
  if (per_expert && fused) fail(dir, "weights", "mixes per-expert and fused expert tensors");
  return fused ? ExpertLayout::Fused : ExpertLayout::PerExpert;
}

void check_shape(const TensorView& v, const Shape& expected, const std::string& what) {
  if (v.shape != expected)
    fail(v.file, v.name, "shape ", shape_str(v.shape), " but config implies ", shape_str(expected), " (", what, ")");
}

// The names a checkpoint stores for its canonical tensors, to detect unexpected ones.
std::set<std::string> stored_names(const std::vector<CanonicalTensor>& tensors, const ModelConfig& c, ExpertLayout layout) {
  std::set<std::string> names;
  for (const auto& t : tensors) {
    if (t.role == Role::Expert && layout == ExpertLayout::Fused) {
      names.insert(fused_gate_up_name(*c.family, t.layer));
      names.insert(fused_down_name(*c.family, t.layer));
    } else {
      names.insert(stored_name(*c.family, t, layout));
    }
  }
  return names;
}

// When the weights are named as another family names them, say which: a config.json with
// the wrong model_type otherwise fails on its first missing name without saying why.
std::string family_hint(const TensorStore& store, const ModelConfig& c) {
  // A family matches when the store holds every name it gives layer 0's norms, router, first
  // expert, q/k norm and shared-expert gate (either layout). Several may match: OLMoE and
  // Qwen3-MoE name all of these alike.
  auto matches = [&](const Family& f) {
    const bool experts = store.contains(expert_tensor_name(f, 0, 0, Proj::Gate)) || store.contains(fused_gate_up_name(f, 0));
    const bool routers = store.contains(router_name(f, 0)) ||
                         (!f.names.fused_router.empty() && store.contains(expand_layer(f.names.fused_router, 0)));
    if (!experts || !routers) return false;
    for (const std::string* tmpl : {&f.names.attn_norm, &f.names.mlp_norm, &f.names.q_norm, &f.names.shared_expert_gate})
      if (!tmpl->empty() && !store.contains(expand_layer(*tmpl, 0))) return false;
    return true;
  };
  if (matches(*c.family)) return "";
  std::string names;
  for (const Family& f : families())
    if (&f != c.family && matches(f)) names += (names.empty() ? "" : " or ") + f.model_type;
  if (names.empty()) return "";
  return cat(" (the weights are named as a ", names, " checkpoint's: does config.json give the right model_type?)");
}

}  // namespace

Checkpoint Checkpoint::open(const fs::path& dir) {
  Checkpoint ck;
  ck.dir_ = dir;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail(dir.string(), "", "not a checkpoint directory (missing or not a directory)");
  fs::path config_path = dir / kConfigFile;
  if (!fs::exists(config_path, ec)) fail(config_path.string(), "", "missing");
  ck.config_ = ModelConfig::load(config_path.string());
  ck.store_ = TensorStore::open_dir(dir);
  ck.layout_ = detect_layout(ck.store_, ck.config_, dir.string());
  ck.tensors_ = canonical_tensors(ck.config_);
  for (size_t i = 0; i < ck.tensors_.size(); ++i) ck.by_name_[ck.tensors_[i].name] = i;

  // Every tensor the config implies must be there with its shape.
  const ModelConfig& c = ck.config_;
  auto specs = c.layers();
  for (const auto& t : ck.tensors_) {
    if (t.role == Role::Expert && ck.layout_ == ExpertLayout::Fused) continue;  // checked per layer below
    const std::string name = stored_name(*c.family, t, ck.layout_);
    if (!ck.store_.contains(name))
      fail(dir.string(), name, "missing from the weights (config implies ", shape_str(t.shape), ")", family_hint(ck.store_, c));
    check_shape(ck.store_.view(name), t.shape, role_name(t.role));
  }
  if (ck.layout_ == ExpertLayout::Fused) {
    for (int l = 0; l < int(specs.size()); ++l) {
      const LayerSpec& s = specs[size_t(l)];
      if (s.dense()) continue;
      std::string gu = fused_gate_up_name(*c.family, l), dn = fused_down_name(*c.family, l);
      if (!ck.store_.contains(gu)) fail(dir.string(), gu, "missing from the weights (fused layout)");
      if (!ck.store_.contains(dn)) fail(dir.string(), dn, "missing from the weights (fused layout)");
      check_shape(ck.store_.view(gu), {s.num_experts, 2 * c.intermediate_size, c.hidden_size}, "fused gate_up_proj");
      check_shape(ck.store_.view(dn), {s.num_experts, c.hidden_size, c.intermediate_size}, "fused down_proj");
    }
  }
  // Nothing unexpected: a tensor we do not know would be silently dropped by every output.
  std::set<std::string> expected = stored_names(ck.tensors_, c, ck.layout_);
  for (const auto& name : ck.store_.names()) {
    if (expected.count(name) || is_ignorable_tensor(name)) continue;
    if (c.tie_word_embeddings && name == c.family->names.lm_head) continue;  // tied copy, unused
    fail(ck.store_.file_of(name), name, "unexpected tensor for model_type ", c.model_type(), " with this config",
         family_hint(ck.store_, c));
  }
  return ck;
}

const CanonicalTensor& Checkpoint::tensor(const std::string& name) const {
  auto it = by_name_.find(name);
  if (it == by_name_.end()) fail(dir_.string(), name, "no such tensor in this model");
  return tensors_[it->second];
}

TensorView Checkpoint::view(const CanonicalTensor& t) const {
  if (t.role != Role::Expert || layout_ == ExpertLayout::PerExpert) {
    const std::string name = stored_name(*config_.family, t, layout_);
    if (name == t.name) return store_.view(t.name);
    TensorView v = store_.view(name);
    v.name = t.name;
    return v;
  }
  const int64_t I = config_.intermediate_size;
  if (t.proj == Proj::Down) {
    TensorView v = store_.view(fused_down_name(*config_.family, t.layer)).slice0(t.expert);
    v.name = t.name;
    return v;
  }
  // gate_up_proj[e] is [2I, H]: rows [0, I) are gate, [I, 2I) are up.
  TensorView e = store_.view(fused_gate_up_name(*config_.family, t.layer)).slice0(t.expert);
  TensorView v = t.proj == Proj::Gate ? e.rows(0, I) : e.rows(I, 2 * I);
  v.name = t.name;
  return v;
}

std::vector<fs::path> Checkpoint::extra_files() const {
  static const std::set<std::string> own = {kConfigFile, kIndexFile, kSingleWeightsFile, kProvenanceFile, kModelCardFile};
  std::set<std::string> weight_files;
  for (const auto& f : store_.files()) weight_files.insert(fs::path(f->path()).filename().string());
  std::vector<fs::path> out;
  for (const auto& entry : fs::directory_iterator(dir_)) {
    std::string name = entry.path().filename().string();
    if (!entry.is_regular_file() || own.count(name) || weight_files.count(name)) continue;
    if (name.size() > 12 && name.substr(name.size() - 12) == ".safetensors") continue;  // stray weights
    out.push_back(entry.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

DType Checkpoint::main_dtype() const {
  std::map<DType, uint64_t> bytes;
  for (const auto& t : tensors_) {
    TensorView v = view(t);
    bytes[v.dtype] += v.nbytes;
  }
  DType best = DType::F32;
  uint64_t most = 0;
  for (const auto& [d, n] : bytes)
    if (n > most) best = d, most = n;
  return best;
}

bool Checkpoint::has_provenance() const {
  std::error_code ec;
  return fs::exists(dir_ / kProvenanceFile, ec);
}

namespace {

struct PlannedTensor {
  TensorSpec spec;
  std::vector<size_t> parts;  // indices into the OutputTensor list, written in this order
};

// Output tensors in write order. Per-expert: one planned tensor each. Fused: a layer's
// experts become gate_up_proj (for e: gate_e, up_e) and down_proj (for e: down_e), placed
// where the layer's first expert tensor was.
std::vector<PlannedTensor> plan_output(const ModelConfig& c, const std::vector<OutputTensor>& tensors, ExpertLayout layout) {
  std::vector<PlannedTensor> plan;
  std::map<int, std::vector<size_t>> experts_of_layer;
  for (size_t i = 0; i < tensors.size(); ++i)
    if (tensors[i].tensor.role == Role::Expert) experts_of_layer[tensors[i].tensor.layer].push_back(i);
  std::set<int> fused_done;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    if (t.tensor.role != Role::Expert || layout == ExpertLayout::PerExpert) {
      plan.push_back({{stored_name(*c.family, t.tensor, layout), t.dtype, t.tensor.shape}, {i}});
      continue;
    }
    int l = t.tensor.layer;
    if (!fused_done.insert(l).second) continue;
    std::map<int, std::map<Proj, size_t>> by_expert;
    for (size_t j : experts_of_layer[l]) by_expert[tensors[j].tensor.expert][tensors[j].tensor.proj] = j;
    int64_t E = int64_t(by_expert.size());
    DType dtype = t.dtype;
    PlannedTensor gate_up{{fused_gate_up_name(*c.family, l), dtype, {E, 2 * c.intermediate_size, c.hidden_size}}, {}};
    PlannedTensor down{{fused_down_name(*c.family, l), dtype, {E, c.hidden_size, c.intermediate_size}}, {}};
    int expected_expert = 0;
    for (auto& [e, projs] : by_expert) {
      if (e != expected_expert++) fail("", gate_up.spec.name, "experts of layer ", l, " are not numbered 0..E-1");
      for (Proj p : {Proj::Gate, Proj::Up, Proj::Down})
        if (!projs.count(p) || tensors[projs[p]].dtype != dtype)
          fail("", gate_up.spec.name, "fused layout needs gate, up and down of one dtype for every expert");
      gate_up.parts.push_back(projs[Proj::Gate]);
      gate_up.parts.push_back(projs[Proj::Up]);
      down.parts.push_back(projs[Proj::Down]);
    }
    plan.push_back(std::move(gate_up));
    plan.push_back(std::move(down));
  }
  return plan;
}

}  // namespace

namespace {

// Pieces the sources hand over as mapped file ranges are gathered into runs of up to
// 64 MB; each run is copied (in the kernel) on the calling thread while the hasher hashes
// it on another core. The hasher may lag up to kLagRuns runs behind the copy: in lockstep
// (each copy waiting for its run's hash) a merge left one core idle whenever a short run
// or a blended tensor came by, and took 1.4x a cp of the same bytes instead of ~1.1x.
class RunWriter {
 public:
  explicit RunWriter(CheckpointWriter& writer) : writer_(writer), hasher_(kLagRuns) {}
  ~RunWriter() { hasher_.wait_quietly(); }  // the tasks read the pieces' hashers: never leave one running

  void add_mapped(Sha256& h, const std::string& out_name, const MappedFile& file, const void* data, size_t n) {
    run_.push_back({&h, out_name, &file, data, n});
    run_bytes_ += n;
    if (run_bytes_ >= kRunBytes) flush();
  }

  // Bytes in a buffer the source reuses once we return: the hasher gets its own copy, or,
  // for a buffer too large to copy, hashes it while we write and we wait for it.
  void add_buffer(Sha256& h, const std::string& out_name, const void* data, size_t n) {
    flush();
    if (n > kRunBytes) {
      hasher_.wait();
      hasher_.start([&h, data, n] { h.update(data, n); });
      try {
        writer_.write(out_name, data, n);
      } catch (...) {
        hasher_.wait_quietly();  // the task reads the source's buffer, gone once we unwind
        throw;
      }
      hasher_.wait();
      return;
    }
    auto copy = std::make_shared<std::vector<uint8_t>>(static_cast<const uint8_t*>(data), static_cast<const uint8_t*>(data) + n);
    hasher_.start([&h, copy] { h.update(copy->data(), copy->size()); });
    writer_.write(out_name, data, n);
  }

  // Hands the gathered run to the hasher and copies it.
  void flush() {
    if (run_.empty()) return;
    std::vector<Piece> run;
    run.swap(run_);
    run_bytes_ = 0;
    hasher_.start([run] {
      for (const Piece& p : run) hash_mapped_range(*p.h, *p.file, p.data, p.n);
    });
    for (const Piece& p : run) writer_.copy(p.out_name, *p.file, p.data, p.n);
    writer_.flush();
  }

  // Everything written and hashed: every Sha256 given so far is complete.
  void finish() {
    flush();
    hasher_.wait();
  }

 private:
  static constexpr size_t kRunBytes = size_t(64) << 20, kLagRuns = 4;
  struct Piece {
    Sha256* h;
    std::string out_name;
    const MappedFile* file;
    const void* data;
    size_t n;
  };
  CheckpointWriter& writer_;
  Worker hasher_;
  std::vector<Piece> run_;
  size_t run_bytes_ = 0;
};

}  // namespace

std::string write_model(const fs::path& dir, const ModelConfig& config, const std::vector<OutputTensor>& tensors,
                        const WriteOptions& options, const TensorSource& source, TensorDigests* digests_out) {
  Json cfg = config.to_json();
  write_file_atomic(dir / kConfigFile, cfg.dump(2) + "\n");
  std::vector<PlannedTensor> plan = plan_output(config, tensors, options.layout);
  std::vector<TensorSpec> specs;
  for (const auto& p : plan) specs.push_back(p.spec);
  CheckpointWriter writer(dir, specs, options.max_shard_bytes);
  // A tensor's digest is final only once the run holding its last piece is hashed, so
  // its hasher is kept until every run is done (pointers into it wait in the runs).
  std::vector<std::pair<const OutputTensor*, std::unique_ptr<Sha256>>> hashers;
  {
    RunWriter runs(writer);
    for (const auto& p : plan) {
      for (size_t part : p.parts) {
        const OutputTensor& t = tensors[part];
        uint64_t expected = TensorSpec{t.tensor.name, t.dtype, t.tensor.shape}.nbytes();
        uint64_t got = 0;
        hashers.emplace_back(&t, std::make_unique<Sha256>());
        Sha256& h = *hashers.back().second;
        source(t, ByteSink([&](const void* data, size_t n, const MappedFile* file) {
          got += n;
          if (got > expected) fail(dir.string(), t.tensor.name, "source produced more than ", expected, " bytes");
          if (file) runs.add_mapped(h, p.spec.name, *file, data, n);
          else runs.add_buffer(h, p.spec.name, data, n);
        }));
        if (got != expected) fail(dir.string(), t.tensor.name, "source produced ", got, " of ", expected, " bytes");
      }
    }
    runs.finish();
  }
  TensorDigests digests;
  for (const auto& [t, h] : hashers)
    digests[t->tensor.name] = {t->dtype, t->tensor.shape, TensorSpec{t->tensor.name, t->dtype, t->tensor.shape}.nbytes(), h->hex()};
  writer.finish();
  if (digests_out) *digests_out = digests;
  return combine_content_hash(config, digests);
}

void copy_extra_files(const Checkpoint& from, const fs::path& dir) {
  for (const auto& f : from.extra_files()) copy_file_synced(f, dir / f.filename());
}

WriteOptions write_options_like(const Checkpoint& ck) {
  WriteOptions o;
  o.layout = ck.layout();
  if (!ck.store().sharded()) {
    o.max_shard_bytes = UINT64_MAX;
    return o;
  }
  uint64_t largest = 0;
  for (const auto& f : ck.store().files()) largest = std::max<uint64_t>(largest, f->mapping()->size() - f->data_offset());
  o.max_shard_bytes = std::max(kDefaultShardBytes, largest);
  return o;
}

void stream_view(const TensorView& view, DType dtype, const ByteSink& sink) {
  const MappedFile& map = *view.owner;
  const size_t base = size_t(view.data - map.data());
  if (dtype == view.dtype) {
    // 64 MB slices, the size of write_model's runs: each is copied by the kernel while
    // the hasher hashes it. Both read through the file descriptor, so the pages can
    // leave our mapping at once.
    const uint64_t slice = 64ull << 20;
    for (uint64_t off = 0; off < view.nbytes; off += slice) {
      uint64_t n = std::min(slice, view.nbytes - off);
      sink.mapped(map, view.data + off, size_t(n));
      map.advise_done(base + size_t(off), size_t(n));
    }
    return;
  }
  if (!dtype_is_float(view.dtype) || !dtype_is_float(dtype))
    fail(view.file, view.name, "cannot convert ", dtype_name(view.dtype), " to ", dtype_name(dtype));
  const size_t in_size = dtype_size(view.dtype), out_size = dtype_size(dtype);
  const uint64_t count = view.nbytes / in_size, chunk = uint64_t(4) << 20;
  std::vector<float> f32(size_t(std::min(chunk, count)));
  std::vector<uint8_t> out(f32.size() * out_size);
  for (uint64_t i = 0; i < count; i += chunk) {
    size_t n = size_t(std::min(chunk, count - i));
    convert_to_f32(view.data + i * in_size, n, view.dtype, f32.data());
    convert_from_f32(f32.data(), n, dtype, out.data());
    sink(out.data(), n * out_size);
    map.advise_done(base + size_t(i * in_size), n * in_size);
  }
}

}  // namespace emo
