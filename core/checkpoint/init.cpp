#include "core/checkpoint/init.h"

#include <algorithm>
#include <cmath>
#include <thread>

#include "core/io/json.h"
#include "core/io/yaml.h"
#include "core/util/error.h"
#include "core/util/splitmix.h"

namespace emo {

namespace {


uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

}  // namespace

// data/presets/<name>.json, compiled in by cmake/embed_presets.cmake.
const std::vector<std::pair<std::string, std::string>>& embedded_preset_files();

namespace {

Preset parse_preset(const std::string& name, const std::string& text, int& order) {
  const std::string file = "data/presets/" + name + ".json";
  Json j = parse_json(text, file);
  for (const char* key : {"order", "description", "tokenizer", "dtype", "config"})
    if (!j.contains(key)) fail(file, key, "missing");
  auto dtype = dtype_from_name(j["dtype"].get<std::string>());
  if (!dtype) fail(file, "dtype", "unknown dtype ", j["dtype"].dump());
  order = j["order"].get<int>();
  return {name, j["description"].get<std::string>(), j["config"].dump(2), j["tokenizer"].get<std::string>(), *dtype};
}

}  // namespace

const std::vector<Preset>& presets() {
  static const std::vector<Preset> all = [] {
    std::vector<std::pair<int, Preset>> ordered;
    for (const auto& [name, text] : embedded_preset_files()) {
      int order = 0;
      Preset p = parse_preset(name, text, order);
      ordered.emplace_back(order, std::move(p));
    }
    std::stable_sort(ordered.begin(), ordered.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<Preset> out;
    for (auto& [order, p] : ordered) out.push_back(std::move(p));
    return out;
  }();
  return all;
}

const Preset& find_preset(const std::string& name) {
  std::string names;
  for (const auto& p : presets()) {
    if (p.name == name) return p;
    names += (names.empty() ? "" : ", ") + p.name;
  }
  fail("--preset", name, "unknown preset (known: ", names, ")");
}

void init_normal(uint64_t seed, const std::string& name, uint64_t offset, float std, float* out, size_t n) {
  // Element i of a tensor comes from pair i/2 of the stream keyed by (seed, name): one
  // splitmix64 draw gives two 24-bit uniforms, Box-Muller turns them into two normals.
  // Single precision is plenty for initial weights and twice as fast as double.
  const uint64_t key = splitmix64(seed ^ fnv1a(name));
  const float two_pi = 6.28318530717958647f;
  auto pair_at = [&](uint64_t pair, float& z0, float& z1) {
    uint64_t r = splitmix64(key + pair * kSplitmixGamma);
    float u1 = (float(r >> 40) + 1.0f) * (1.0f / 16777216.0f);  // (0, 1]: log stays finite
    float u2 = float(r & 0xffffffu) * (1.0f / 16777216.0f);     // [0, 1)
    float radius = std::sqrt(-2.0f * std::log(u1)) * std;
    float s, c;
    sincosf(two_pi * u2, &s, &c);
    z0 = radius * c;
    z1 = radius * s;
  };
  size_t i = 0;
  uint64_t e = offset;
  float z0, z1;
  if (e & 1) {  // chunk starts on the second element of a pair
    pair_at(e / 2, z0, z1);
    out[i++] = z1;
    ++e;
  }
  for (; i + 1 < n; i += 2, e += 2) pair_at(e / 2, out[i], out[i + 1]);
  if (i < n) {
    pair_at(e / 2, z0, z1);
    out[i] = z0;
  }
}

void init_tensor_chunk(const CanonicalTensor& t, const ModelConfig& config, const InitOptions& options,
                       uint64_t offset, float* out, size_t n) {
  bool is_norm = t.role == Role::AttnNorm || t.role == Role::MlpNorm || t.role == Role::FinalNorm || t.role == Role::QKNorm;
  if (is_norm) {
    std::fill(out, out + n, 1.0f);
    return;
  }
  if (t.is_bias) {
    std::fill(out, out + n, 0.0f);
    return;
  }
  float std = float(config.raw.contains("initializer_range") && config.raw["initializer_range"].is_number()
                        ? config.raw["initializer_range"].get<double>()
                        : options.initializer_range);
  // Split across threads by element range; each range is reproducible on its own.
  unsigned threads = options.threads ? options.threads : std::max(1u, std::thread::hardware_concurrency());
  if (n < (1u << 16)) threads = 1;
  std::vector<std::thread> pool;
  size_t per = (n + threads - 1) / threads;
  per += per & 1;  // keep pairs whole so threads do not redo each other's draws
  for (unsigned k = 0; k < threads; ++k) {
    size_t begin = std::min(n, size_t(k) * per), end = std::min(n, begin + per);
    if (begin >= end) break;
    pool.emplace_back([&, begin, end] { init_normal(options.seed, t.name, offset + begin, std, out + begin, end - begin); });
  }
  for (auto& th : pool) th.join();
  // nn.Embedding(padding_idx) zeroes the padding row at init.
  if (t.role == Role::Embedding && config.pad_token_id) {
    const uint64_t H = uint64_t(config.hidden_size);
    uint64_t row_begin = uint64_t(*config.pad_token_id) * H, row_end = row_begin + H;
    for (uint64_t e = std::max(row_begin, offset); e < std::min(row_end, offset + n); ++e) out[e - offset] = 0.0f;
  }
}

std::string write_initialised_model(const fs::path& dir, const ModelConfig& config, const InitOptions& options) {
  ModelConfig c = config;
  c.raw["torch_dtype"] = dtype_torch_name(options.dtype);
  std::vector<OutputTensor> tensors;
  for (const auto& t : canonical_tensors(c)) tensors.push_back({t, options.dtype});
  // Chunks of 8M elements: 32 MB of float32 plus the converted copy, whatever the tensor.
  const size_t chunk = size_t(8) << 20;
  std::vector<float> values;
  std::vector<uint8_t> converted;
  return write_model(dir, c, tensors, options.write, [&](const OutputTensor& t, const ByteSink& sink) {
    uint64_t total = shape_numel(t.tensor.shape, "", t.tensor.name);
    for (uint64_t off = 0; off < total; off += chunk) {
      size_t n = size_t(std::min<uint64_t>(chunk, total - off));
      values.resize(n);
      init_tensor_chunk(t.tensor, c, options, off, values.data(), n);
      converted.resize(n * dtype_size(t.dtype));
      convert_from_f32(values.data(), n, t.dtype, converted.data());
      sink(converted.data(), converted.size());
    }
  });
}

ModelConfig load_model_config_file(const std::string& path) {
  std::string text = read_text_file(path);
  // config.json, or the same keys in YAML.
  Json j;
  if (!text.empty() && text.find_first_not_of(" \t\r\n") != std::string::npos &&
      text[text.find_first_not_of(" \t\r\n")] == '{') {
    j = parse_json(text, path);
  } else {
    j = yaml_to_json(load_yaml_text(text, path), path);
  }
  return ModelConfig::from_json(j, path);
}

// Writes tokenizer.json plus the small HF files a tokenizer loader expects.
void write_tokenizer_files(const fs::path& out, const fs::path& tokenizer_dir, const ModelConfig& c) {
  copy_file_synced(tokenizer_dir / "tokenizer.json", out / "tokenizer.json");
  std::error_code ec;
  if (fs::exists(tokenizer_dir / "LICENSE", ec)) copy_file_synced(tokenizer_dir / "LICENSE", out / "LICENSE.tokenizer");
  Json tok_config = {{"tokenizer_class", "GPT2Tokenizer"}, {"add_bos_token", false}, {"add_eos_token", false},
                     {"clean_up_tokenization_spaces", false}, {"model_max_length", c.max_position_embeddings},
                     {"eos_token", "<|endoftext|>"}, {"pad_token", "<|pad|>"}, {"bos_token", nullptr},
                     {"unk_token", nullptr}};
  write_file_atomic(out / "tokenizer_config.json", tok_config.dump(2) + "\n");
  Json special = {{"eos_token", "<|endoftext|>"}, {"pad_token", "<|pad|>"}};
  write_file_atomic(out / "special_tokens_map.json", special.dump(2) + "\n");
  Json gen = {{"_from_model_config", true}, {"eos_token_id", c.eos_token_ids.empty() ? Json() : Json(c.eos_token_ids[0])},
              {"pad_token_id", c.pad_token_id ? Json(*c.pad_token_id) : Json()}};
  write_file_atomic(out / "generation_config.json", gen.dump(2) + "\n");
}


std::string default_tokenizer_for(const ModelConfig& config) { return config.vocab_size <= 8002 ? "dolma2-8k" : "dolma2"; }

}  // namespace emo
