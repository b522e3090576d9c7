#include "core/checkpoint/config.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <set>

#include "core/util/error.h"

namespace emo {

namespace {

// Keys every family reads under the same name. With the family's own keys (family.h) they
// are what --set accepts and what the content hash covers.
const std::vector<std::string> kCommonKeys = {
    "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "hidden_act",
    "max_position_embeddings", "rms_norm_eps", "rope_theta", "rope_scaling", "attention_dropout",
    "num_experts_per_tok", "router_aux_loss_coef", "tie_word_embeddings", "pad_token_id", "bos_token_id",
    "eos_token_id", "initializer_range", "use_cache", "output_router_logits", "torch_dtype"};
// Keys that do not change what the model computes (training or bookkeeping only).
const std::set<std::string> kNonDefining = {"router_aux_loss_coef", "attention_dropout", "initializer_range",
                                            "use_cache", "output_router_logits", "torch_dtype",
                                            "pad_token_id", "bos_token_id", "eos_token_id", "router_jitter_noise",
                                            "max_window_layers", "layer_types"};

// The keys a family reads: the common ones, where its row puts the sizes and switches, and
// its own. Empty entries of the row (no such key) are left out.
std::vector<std::string> family_keys(const Family& f) {
  std::vector<std::string> keys = kCommonKeys;
  for (const std::string& k : {f.keys.experts, f.keys.expert_width, f.keys.dense_width, f.keys.shared_width,
                               f.keys.attention_bias})
    if (!k.empty()) keys.push_back(k);
  if (f.norm_topk_key) keys.push_back("norm_topk_prob");
  keys.insert(keys.end(), f.keys.own.begin(), f.keys.own.end());
  return keys;
}

class FieldReader {
 public:
  FieldReader(const Json& j, const std::string& file) : j_(j), file_(file) {}

  bool has(const std::string& key) const { return j_.contains(key) && !j_[key].is_null(); }

  int64_t required_int(const std::string& key) const {
    if (!j_.contains(key)) fail(file_, key, "missing (required)");
    return as_int(key, j_[key]);
  }
  int64_t integer(const std::string& key, int64_t def) const { return has(key) ? as_int(key, j_[key]) : def; }
  std::optional<int64_t> optional_int(const std::string& key) const {
    if (!has(key)) return std::nullopt;
    return as_int(key, j_[key]);
  }
  double number(const std::string& key, double def) const {
    if (!has(key)) return def;
    const Json& v = j_[key];
    if (!v.is_number()) fail(file_, key, "expected a number, found ", v.type_name(), " ", v.dump());
    return v.get<double>();
  }
  std::optional<double> optional_number(const std::string& key) const {
    if (!has(key)) return std::nullopt;
    return number(key, 0);
  }
  bool boolean(const std::string& key, bool def) const {
    if (!has(key)) return def;
    const Json& v = j_[key];
    if (!v.is_boolean()) fail(file_, key, "expected true or false, found ", v.type_name(), " ", v.dump());
    return v.get<bool>();
  }
  std::string string(const std::string& key, const std::string& def) const {
    if (!has(key)) return def;
    const Json& v = j_[key];
    if (!v.is_string()) fail(file_, key, "expected a string, found ", v.type_name(), " ", v.dump());
    return v.get<std::string>();
  }
  std::optional<std::vector<int64_t>> int_list(const std::string& key) const {
    if (!has(key)) return std::nullopt;
    return as_int_list(key, j_[key]);
  }
  std::optional<std::vector<std::vector<int64_t>>> int_list_list(const std::string& key) const {
    if (!has(key)) return std::nullopt;
    const Json& v = j_[key];
    if (!v.is_array()) fail(file_, key, "expected a list of lists of integers, found ", v.type_name());
    std::vector<std::vector<int64_t>> out;
    for (size_t i = 0; i < v.size(); ++i) out.push_back(as_int_list(cat(key, "[", i, "]"), v[i]));
    return out;
  }
  std::vector<int64_t> int_or_list(const std::string& key, std::optional<int64_t> def) const {
    if (!has(key)) return def ? std::vector<int64_t>{*def} : std::vector<int64_t>{};
    const Json& v = j_[key];
    if (v.is_array()) return as_int_list(key, v);
    return {as_int(key, v)};
  }

 private:
  int64_t as_int(const std::string& key, const Json& v) const {
    // HF configs sometimes carry 4096.0 for an integer; accept exact whole floats only.
    // Range first: converting an out-of-range double to int64 is undefined (found by fuzz_config).
    if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX))
      fail(file_, key, "integer ", v.dump(), " is too large");
    if (v.is_number_integer()) return v.get<int64_t>();
    if (v.is_number_float()) {
      double d = v.get<double>();
      if (!(d >= -9.0e18 && d <= 9.0e18)) fail(file_, key, "integer ", v.dump(), " is too large");
      if (d == std::floor(d)) return int64_t(d);
    }
    fail(file_, key, "expected an integer, found ", v.type_name(), " ", v.dump());
  }
  std::vector<int64_t> as_int_list(const std::string& key, const Json& v) const {
    if (!v.is_array()) fail(file_, key, "expected a list of integers, found ", v.type_name());
    std::vector<int64_t> out;
    for (size_t i = 0; i < v.size(); ++i) out.push_back(as_int(cat(key, "[", i, "]"), v[i]));
    return out;
  }
  const Json& j_;
  const std::string& file_;
};

// Writes typed values back into the original object: a key the original had is always
// rewritten (so edits show), a key it lacked only when the value differs from default.
class FieldWriter {
 public:
  explicit FieldWriter(Json& out) : out_(out) {}
  template <typename T>
  void put(const std::string& key, const T& value, const T& def) {
    if (out_.contains(key) || !(value == def)) out_[key] = value;
  }
  template <typename T>
  void put_optional(const std::string& key, const std::optional<T>& value) {
    if (value) out_[key] = *value;
    else if (out_.contains(key)) out_[key] = nullptr;
  }

 private:
  Json& out_;
};

// transformers v5's "rope_parameters": {"rope_type": ..., "rope_theta": ..., scaling keys}.
// A config that also states rope_scaling, or another rope_theta, contradicts itself.
void read_rope_parameters(const Json& j, const std::string& file, ModelConfig& c) {
  const Json& p = j["rope_parameters"];
  if (!p.is_object()) fail(file, "rope_parameters", "expected an object or null, found ", p.type_name());
  for (auto it = p.begin(); it != p.end(); ++it)
    if (it.value().is_object())
      fail(file, "rope_parameters." + it.key(), "per-layer-type rope parameters are not supported (emo's families "
                                                "use one rotary embedding for every layer)");
  if (!c.rope_scaling.is_null()) fail(file, "rope_scaling", "given together with rope_parameters: state one of them");
  if (p.contains("rope_theta")) {
    if (!p["rope_theta"].is_number()) fail(file, "rope_parameters.rope_theta", "expected a number");
    const double theta = p["rope_theta"].get<double>();
    if (j.contains("rope_theta") && j["rope_theta"].is_number() && j["rope_theta"].get<double>() != theta)
      fail(file, "rope_theta", j["rope_theta"].get<double>(), " contradicts rope_parameters.rope_theta ", theta);
    c.rope_theta = theta;
  }
  const std::string kind = p.contains("rope_type") && p["rope_type"].is_string() ? p["rope_type"].get<std::string>()
                           : p.contains("type") && p["type"].is_string()      ? p["type"].get<std::string>()
                                                                                : "default";
  Json scaling = p;
  scaling.erase("rope_theta");
  c.rope_scaling = kind == "default" ? Json() : scaling;
  c.rope_parameters_style = true;
}

}  // namespace

namespace {

// The routed-expert count under the family's key or its transformers alias; both given and
// different is a contradiction.
int64_t read_expert_count(const FieldReader& r, const Json& j, const Family& f, const std::string& file) {
  const std::string& alias = f.keys.experts_alias;
  if (!alias.empty() && r.has(alias)) {
    int64_t v = r.required_int(alias);
    if (r.has(f.keys.experts) && r.required_int(f.keys.experts) != v)
      fail(file, alias, v, " contradicts ", f.keys.experts, " ", j[f.keys.experts].dump(), " (one expert count, two spellings)");
    return v;
  }
  return r.required_int(f.keys.experts);
}

// The family's traits that have config keys: which layers are dense, shared experts,
// always-active experts, sliding windows, OLMoE's clip.
void read_family_keys(const FieldReader& r, const Family& f, const std::string& file, ModelConfig& c) {
  if (!f.keys.dense_width.empty()) c.dense_intermediate_size = r.optional_int(f.keys.dense_width);
  if (!f.keys.shared_width.empty()) c.shared_expert_intermediate_size = r.required_int(f.keys.shared_width);
  if (f.shared == SharedExperts::RouterColumns) {
    c.num_shared_experts = r.integer("num_shared_experts", 0);
    c.num_shared_experts_per_layer = r.int_list("num_shared_experts_per_layer");
  }
  if (f.dense == DenseLayers::PerLayerCounts) {
    c.num_experts_per_layer = r.int_list("num_experts_per_layer");
    c.dense_mlp_bias = r.boolean("dense_mlp_bias", false);
  }
  if (f.dense == DenseLayers::SparseStep) {
    c.decoder_sparse_step = r.integer("decoder_sparse_step", 1);
    c.mlp_only_layers = r.int_list("mlp_only_layers").value_or(std::vector<int64_t>{});
  }
  if (f.always_active) {
    c.always_active_experts = r.int_list("always_active_experts");
    c.always_active_experts_per_layer = r.int_list_list("always_active_experts_per_layer");
  }
  if (f.clip_qkv) c.clip_qkv = r.optional_number("clip_qkv");
  if (f.sliding != SlidingWindow::None) {
    c.use_sliding_window = f.sliding != SlidingWindow::Key && r.boolean("use_sliding_window", false);
    c.sliding_window = r.optional_int("sliding_window");
    if (f.sliding == SlidingWindow::Refused && c.use_sliding_window)
      fail(file, "use_sliding_window", "true is not supported for ", f.model_type, " (its sliding layers follow a "
           "per-layer pattern emo does not implement); set it to false");
  }
}

}  // namespace

ModelConfig ModelConfig::from_json(const Json& j, const std::string& file) {
  if (!j.is_object()) fail(file, "", "expected a JSON object, found ", j.type_name());
  FieldReader r(j, file);
  ModelConfig c;
  c.raw = j;
  c.source = file;
  std::string mt = r.string("model_type", "");
  if (mt.empty()) fail(file, "model_type", "missing (required; emo reads ", family_list(), ")");
  c.family = find_family(mt);
  if (!c.family) fail(file, "model_type", "'", mt, "' is not supported (supported: ", family_list(), ")");
  const Family& f = *c.family;
  const FamilyDefaults& d = f.defaults;

  c.vocab_size = r.required_int("vocab_size");
  c.hidden_size = r.required_int("hidden_size");
  c.intermediate_size = r.required_int(f.keys.expert_width);
  c.num_hidden_layers = r.required_int("num_hidden_layers");
  c.num_attention_heads = r.required_int("num_attention_heads");
  c.num_key_value_heads = r.integer("num_key_value_heads", c.num_attention_heads);
  if (f.reads_head_dim) c.head_dim = r.optional_int("head_dim");
  c.hidden_act = r.string("hidden_act", "silu");
  c.max_position_embeddings = r.integer("max_position_embeddings", d.max_position_embeddings);
  c.rms_norm_eps = r.number("rms_norm_eps", d.rms_norm_eps);
  c.rope_theta = r.number("rope_theta", d.rope_theta);
  c.rope_scaling = r.has("rope_scaling") ? j["rope_scaling"] : Json();
  if (!c.rope_scaling.is_null() && !c.rope_scaling.is_object())
    fail(file, "rope_scaling", "expected an object or null, found ", c.rope_scaling.type_name());
  if (j.contains("rope_parameters") && !j["rope_parameters"].is_null()) read_rope_parameters(j, file, c);
  c.attention_bias = f.keys.attention_bias.empty() ? false : r.boolean(f.keys.attention_bias, d.attention_bias);
  c.attention_dropout = r.number("attention_dropout", 0.0);
  c.num_experts_per_tok = r.required_int("num_experts_per_tok");
  c.num_experts = read_expert_count(r, j, f, file);
  c.norm_topk_prob = f.norm_topk_key ? r.boolean("norm_topk_prob", false) : f.always_norm_topk;
  c.router_aux_loss_coef = r.number("router_aux_loss_coef", d.router_aux_loss_coef);
  c.tie_word_embeddings = r.boolean("tie_word_embeddings", false);
  c.pad_token_id = j.contains("pad_token_id") ? r.optional_int("pad_token_id") : d.pad;
  c.bos_token_id = j.contains("bos_token_id") ? r.optional_int("bos_token_id") : d.bos;
  c.eos_token_ids = j.contains("eos_token_id") ? r.int_or_list("eos_token_id", std::nullopt)
                                               : r.int_or_list("eos_token_id", d.eos);
  read_family_keys(r, f, file, c);
  c.validate(file);
  return c;
}

ModelConfig ModelConfig::load(const std::string& path) { return from_json(load_json_file(path), path); }

std::optional<int64_t> ModelConfig::attention_window() const {
  if (family->sliding == SlidingWindow::Key) return sliding_window;
  if (family->sliding == SlidingWindow::Switched && use_sliding_window) return sliding_window;
  return std::nullopt;
}

Json ModelConfig::to_json() const {
  Json out = raw.is_object() ? raw : Json::object();
  const Family& f = *family;
  const FamilyDefaults& d = f.defaults;
  FieldWriter w(out);
  out["model_type"] = f.model_type;
  out["vocab_size"] = vocab_size;
  out["hidden_size"] = hidden_size;
  out[f.keys.expert_width] = intermediate_size;
  out["num_hidden_layers"] = num_hidden_layers;
  out["num_attention_heads"] = num_attention_heads;
  w.put("num_key_value_heads", num_key_value_heads, num_attention_heads);
  w.put<std::string>("hidden_act", hidden_act, "silu");
  w.put<int64_t>("max_position_embeddings", max_position_embeddings, d.max_position_embeddings);
  w.put("rms_norm_eps", rms_norm_eps, d.rms_norm_eps);
  if (rope_parameters_style) {
    Json p = rope_scaling.is_object() ? rope_scaling : Json{{"rope_type", "default"}};
    p["rope_theta"] = rope_theta;
    out["rope_parameters"] = p;
    if (out.contains("rope_theta")) out["rope_theta"] = rope_theta;
  } else {
    w.put("rope_theta", rope_theta, d.rope_theta);
    if (!rope_scaling.is_null() || out.contains("rope_scaling")) out["rope_scaling"] = rope_scaling;
  }
  if (!f.keys.attention_bias.empty()) w.put(f.keys.attention_bias, attention_bias, d.attention_bias);
  w.put("attention_dropout", attention_dropout, 0.0);
  out["num_experts_per_tok"] = num_experts_per_tok;
  out[experts_key()] = num_experts;
  if (f.norm_topk_key) w.put("norm_topk_prob", norm_topk_prob, false);
  w.put("router_aux_loss_coef", router_aux_loss_coef, d.router_aux_loss_coef);
  w.put("tie_word_embeddings", tie_word_embeddings, false);
  w.put_optional("pad_token_id", pad_token_id);
  w.put_optional("bos_token_id", bos_token_id);
  if (eos_token_ids.size() > 1) out["eos_token_id"] = eos_token_ids;
  else if (eos_token_ids.size() == 1 && d.eos) w.put("eos_token_id", eos_token_ids[0], *d.eos);
  else if (eos_token_ids.size() == 1) out["eos_token_id"] = eos_token_ids[0];
  else if (out.contains("eos_token_id")) out["eos_token_id"] = nullptr;
  if (f.reads_head_dim) w.put_optional("head_dim", head_dim);
  if (!f.keys.dense_width.empty()) w.put_optional(f.keys.dense_width, dense_intermediate_size);
  if (!f.keys.shared_width.empty()) w.put_optional(f.keys.shared_width, shared_expert_intermediate_size);
  if (f.shared == SharedExperts::RouterColumns) {
    w.put<int64_t>("num_shared_experts", num_shared_experts, 0);
    w.put_optional("num_shared_experts_per_layer", num_shared_experts_per_layer);
  }
  if (f.dense == DenseLayers::PerLayerCounts) {
    w.put_optional("num_experts_per_layer", num_experts_per_layer);
    w.put("dense_mlp_bias", dense_mlp_bias, false);
  }
  if (f.dense == DenseLayers::SparseStep) {
    w.put<int64_t>("decoder_sparse_step", decoder_sparse_step, 1);
    w.put("mlp_only_layers", mlp_only_layers, std::vector<int64_t>{});
  }
  if (f.always_active) {
    w.put_optional("always_active_experts", always_active_experts);
    w.put_optional("always_active_experts_per_layer", always_active_experts_per_layer);
  }
  if (f.clip_qkv) w.put_optional("clip_qkv", clip_qkv);
  if (f.sliding != SlidingWindow::None) {
    if (f.sliding != SlidingWindow::Key) w.put("use_sliding_window", use_sliding_window, false);
    w.put_optional("sliding_window", sliding_window);
  }
  return out;
}

const std::string& ModelConfig::experts_key() const {
  const FamilyKeys& k = family->keys;
  const bool alias = !k.experts_alias.empty() && raw.is_object() && raw.contains(k.experts_alias) && !raw.contains(k.experts);
  return alias ? k.experts_alias : k.experts;
}

int64_t ModelConfig::resolved_head_dim() const {
  // EmoAttention, Qwen*Attention, MixtralAttention: config.head_dim when set, else
  // hidden_size // num_attention_heads. OlmoeAttention: hidden_size // num_heads, always.
  if (family->reads_head_dim && head_dim) return *head_dim;
  return num_attention_heads > 0 ? hidden_size / num_attention_heads : 0;
}

std::vector<LayerSpec> ModelConfig::layers() const {
  const Family& f = *family;
  std::vector<LayerSpec> out(size_t(std::max<int64_t>(num_hidden_layers, 0)));
  for (size_t l = 0; l < out.size(); ++l) {
    LayerSpec& s = out[l];
    s.num_experts = num_experts;
    if (f.dense == DenseLayers::SparseStep) {
      // Qwen*DecoderLayer: sparse when l is not in mlp_only_layers and num_experts > 0 and
      // (l + 1) % decoder_sparse_step == 0.
      const bool mlp_only = std::count(mlp_only_layers.begin(), mlp_only_layers.end(), int64_t(l)) > 0;
      const bool sparse = !mlp_only && num_experts > 0 && decoder_sparse_step > 0 &&
                          (int64_t(l) + 1) % decoder_sparse_step == 0;
      if (!sparse) s.num_experts = 0;
    }
    if (f.shared == SharedExperts::GatedMlp) s.gated_shared_mlp = !s.dense();
    if (f.dense != DenseLayers::PerLayerCounts) continue;
    // EmoModel.__init__: per-layer counts when given; shared defaults to
    // min(num_shared_experts, layer experts); always-active per layer or global.
    if (num_experts_per_layer) {
      s.num_experts = (*num_experts_per_layer)[l];
      s.num_shared_experts = num_shared_experts_per_layer ? (*num_shared_experts_per_layer)[l]
                                                          : std::min(num_shared_experts, s.num_experts);
    } else {
      s.num_shared_experts = num_shared_experts;
    }
    if (always_active_experts_per_layer) s.always_active = (*always_active_experts_per_layer)[l];
    else if (always_active_experts) s.always_active = *always_active_experts;
  }
  return out;
}

void ModelConfig::validate(const std::string& file) const {
  auto positive = [&](const char* key, int64_t v) {
    if (v <= 0) fail(file, key, "must be positive, found ", v);
  };
  positive("vocab_size", vocab_size);
  positive("hidden_size", hidden_size);
  const Family& f = *family;
  positive(f.keys.expert_width.c_str(), intermediate_size);
  positive("num_hidden_layers", num_hidden_layers);
  positive("num_attention_heads", num_attention_heads);
  positive("num_key_value_heads", num_key_value_heads);
  positive("num_experts_per_tok", num_experts_per_tok);
  if (num_experts < 0 || (num_experts == 0 && f.dense != DenseLayers::SparseStep))
    fail(file, f.keys.experts, "must be positive, found ", num_experts);
  if (num_hidden_layers > 100000) fail(file, "num_hidden_layers", num_hidden_layers, " is not a plausible layer count");
  // Bounds far above any real model (vocabularies ~256k, hidden ~16k, 256 experts), so that
  // no product of two sizes can overflow and every tensor's byte count is checked once
  // (shape_numel) before anything is allocated from it.
  auto bounded = [&](const char* key, int64_t v, int64_t max) {
    if (v > max) fail(file, key, v, " is above the supported maximum ", max);
  };
  constexpr int64_t kMaxWidth = int64_t(1) << 24, kMaxCount = int64_t(1) << 16;
  constexpr int64_t kMaxTotalExperts = int64_t(1) << 20;
  bounded("vocab_size", vocab_size, kMaxWidth);
  bounded("hidden_size", hidden_size, kMaxWidth);
  bounded(f.keys.expert_width.c_str(), intermediate_size, kMaxWidth);
  if (dense_intermediate_size) bounded(f.keys.dense_width.c_str(), *dense_intermediate_size, kMaxWidth);
  if (shared_expert_intermediate_size) {
    positive(f.keys.shared_width.c_str(), *shared_expert_intermediate_size);
    bounded(f.keys.shared_width.c_str(), *shared_expert_intermediate_size, kMaxWidth);
  }
  if (head_dim) bounded("head_dim", *head_dim, kMaxWidth);
  bounded("num_attention_heads", num_attention_heads, kMaxCount);
  bounded("num_key_value_heads", num_key_value_heads, kMaxCount);
  bounded(f.keys.experts.c_str(), num_experts, kMaxCount);
  bounded("num_experts_per_tok", num_experts_per_tok, kMaxCount);
  if (num_experts_per_layer)
    for (int64_t n : *num_experts_per_layer) bounded("num_experts_per_layer", n, kMaxCount);
  if (hidden_act != "silu" && hidden_act != "swish")
    fail(file, "hidden_act", "'", hidden_act, "' is not supported (the reference models use silu)");
  if (num_attention_heads % num_key_value_heads != 0)
    fail(file, "num_key_value_heads", num_key_value_heads, " does not divide num_attention_heads ", num_attention_heads);
  if (!f.reads_head_dim || !head_dim) {
    if (hidden_size % num_attention_heads != 0)
      fail(file, "num_attention_heads", num_attention_heads, " does not divide hidden_size ", hidden_size);
  } else if (*head_dim <= 0) {
    fail(file, "head_dim", "must be positive, found ", *head_dim);
  }
  if (resolved_head_dim() % 2 != 0) fail(file, "head_dim", "rotary embeddings need an even head dimension, found ", resolved_head_dim());
  if (!(rms_norm_eps > 0)) fail(file, "rms_norm_eps", "must be positive");
  if (!(rope_theta > 0)) fail(file, "rope_theta", "must be positive");
  if (!rope_scaling.is_null()) {
    std::string kind = rope_scaling.contains("rope_type") ? rope_scaling["rope_type"].get<std::string>()
                       : rope_scaling.contains("type")    ? rope_scaling["type"].get<std::string>()
                                                          : "";
    static const std::set<std::string> supported = {"default", "linear", "dynamic", "llama3", "yarn"};
    if (!supported.count(kind)) fail(file, "rope_scaling", "rope type '", kind, "' is not supported (", "default, linear, dynamic, llama3, yarn)");
  }
  auto check_list_length = [&](const char* key, size_t n) {
    if (int64_t(n) != num_hidden_layers)
      fail(file, key, "has ", n, " entries but num_hidden_layers is ", num_hidden_layers);
  };
  if (num_experts_per_layer) check_list_length("num_experts_per_layer", num_experts_per_layer->size());
  if (num_shared_experts_per_layer) check_list_length("num_shared_experts_per_layer", num_shared_experts_per_layer->size());
  if (always_active_experts_per_layer) check_list_length("always_active_experts_per_layer", always_active_experts_per_layer->size());
  if (num_shared_experts < 0 || num_shared_experts > num_experts)
    fail(file, "num_shared_experts", num_shared_experts, " must be between 0 and num_experts (", num_experts, ")");
  bool any_dense = false;
  auto specs = layers();
  // Every expert is a few named tensors in memory: bound their number before anything
  // (canonical_tensors, a plan, a hash) enumerates them.
  int64_t total_experts = 0;
  for (const LayerSpec& s : specs) total_experts += std::max<int64_t>(s.num_experts, 0);
  if (total_experts > kMaxTotalExperts)
    fail(file, "num_experts", total_experts, " experts over all layers is above the supported maximum ", kMaxTotalExperts);
  for (size_t l = 0; l < specs.size(); ++l) {
    const LayerSpec& s = specs[l];
    std::string where = cat("layer ", l);
    if (s.num_experts < 0) fail(file, "num_experts_per_layer", where, ": negative expert count");
    if (s.dense()) {
      any_dense = true;
      continue;
    }
    if (s.num_shared_experts < 0 || s.num_shared_experts > s.num_experts)
      fail(file, "num_shared_experts_per_layer", where, ": ", s.num_shared_experts, " shared of ", s.num_experts, " experts");
    for (int64_t e : s.always_active)
      if (e < 0 || e >= s.num_experts)
        fail(file, "always_active_experts", where, ": expert ", e, " out of range [0, ", s.num_experts, ")");
    int64_t fixed = s.always_active.empty() ? s.num_shared_experts : int64_t(s.always_active.size());
    int64_t selectable = s.always_active.empty() ? s.num_routed() : s.num_experts - int64_t(s.always_active.size());
    // The reference takes top-(k - shared) of the routed columns; torch.topk fails when
    // k exceeds what is there, so such a model cannot run.
    if (num_experts_per_tok > s.num_experts)
      fail(file, "num_experts_per_tok", num_experts_per_tok, " exceeds the ", s.num_experts, " experts of ", where);
    if (num_experts_per_tok - fixed < 0 || num_experts_per_tok - fixed > selectable)
      fail(file, "num_experts_per_tok", "top-", num_experts_per_tok, " with ", fixed, " fixed experts needs ",
           num_experts_per_tok - fixed, " routed of the ", selectable, " in ", where);
    if (norm_topk_prob && (s.num_shared_experts > 0 || !s.always_active.empty()))
      fail(file, "norm_topk_prob", "is not supported with shared or always-active experts (the reference raises "
           "NotImplementedError), ", where);
  }
  if (any_dense && (!dense_intermediate_size || *dense_intermediate_size <= 0))
    fail(file, f.keys.dense_width.empty() ? f.keys.experts : f.keys.dense_width,
         f.keys.dense_width.empty() ? "must be positive (this family has no dense layers)"
                                    : "required (positive) when a layer is dense");
  if (f.dense == DenseLayers::SparseStep) {
    if (decoder_sparse_step <= 0) fail(file, "decoder_sparse_step", "must be positive, found ", decoder_sparse_step);
    for (int64_t l : mlp_only_layers)
      if (l < 0 || l >= num_hidden_layers)
        fail(file, "mlp_only_layers", "layer ", l, " out of range [0, ", num_hidden_layers, ")");
  }
  if (attention_window() && *attention_window() <= 0)
    fail(file, "sliding_window", "must be positive or null, found ", *attention_window());
  if (pad_token_id && (*pad_token_id < 0 || *pad_token_id >= vocab_size))
    fail(file, "pad_token_id", *pad_token_id, " out of range for vocab_size ", vocab_size);
  if (clip_qkv && !(*clip_qkv > 0)) fail(file, "clip_qkv", "must be positive or null");
}

Json ModelConfig::model_defining() const {
  const Family& f = *family;
  Json full = to_json();
  Json out = Json::object();
  auto take = [&](const std::vector<std::string>& keys) {
    for (const auto& k : keys) {
      if (kNonDefining.count(k)) continue;
      out[k] = full.contains(k) ? full[k] : Json();
    }
  };
  out["model_type"] = f.model_type;
  take(family_keys(f));
  out[f.keys.experts] = num_experts;  // whichever spelling the config used
  out[f.keys.expert_width] = intermediate_size;
  // Resolved values replace absent keys so omitted defaults hash like stated ones.
  out["num_key_value_heads"] = num_key_value_heads;
  out["hidden_act"] = hidden_act;
  out["max_position_embeddings"] = max_position_embeddings;
  out["rms_norm_eps"] = rms_norm_eps;
  out["rope_theta"] = rope_theta;
  out["rope_scaling"] = rope_scaling;
  if (!f.keys.attention_bias.empty()) out[f.keys.attention_bias] = attention_bias;
  if (f.norm_topk_key) out["norm_topk_prob"] = norm_topk_prob;
  out["tie_word_embeddings"] = tie_word_embeddings;
  if (f.reads_head_dim) out["head_dim"] = resolved_head_dim();
  if (f.dense == DenseLayers::SparseStep) {  // the layer plan, however the config spells it
    Json experts = Json::array();
    for (const auto& s : layers()) experts.push_back(s.num_experts);
    out["experts_per_layer"] = experts;
    out.erase("decoder_sparse_step"), out.erase("mlp_only_layers");
  }
  if (f.sliding != SlidingWindow::None) {
    out["sliding_window"] = attention_window() ? Json(*attention_window()) : Json();
    out.erase("use_sliding_window");
  }
  if (f.dense == DenseLayers::PerLayerCounts) {
    out["num_shared_experts"] = num_shared_experts;
    Json per_layer = Json::array();
    for (const auto& s : layers())
      per_layer.push_back({{"experts", s.num_experts}, {"shared", s.num_shared_experts}, {"always_active", s.always_active}});
    out["layers"] = per_layer;
    for (const char* k : {"num_experts_per_layer", "num_shared_experts_per_layer", "always_active_experts",
                          "always_active_experts_per_layer"})
      out.erase(k);
    out["dense_mlp_bias"] = dense_mlp_bias;
  }
  return out;
}

void ModelConfig::apply_overrides(const std::vector<std::pair<std::string, std::string>>& overrides) {
  if (overrides.empty()) return;
  const std::vector<std::string> keys = family_keys(*family);
  Json j = to_json();
  for (const auto& [key, value] : overrides) {
    bool known = key == "model_type" || std::count(keys.begin(), keys.end(), key) ||
                 (!family->keys.experts_alias.empty() && key == family->keys.experts_alias);
    if (!known) fail(source, key, "unknown config key for model_type ", model_type(), " (--set)");
    Json v;
    try {
      v = Json::parse(value);
    } catch (const nlohmann::json::exception&) {
      v = value;  // a bare word: take it as a string
    }
    j[key] = v;
    // One expert count: setting one spelling replaces the other.
    if (key == family->keys.experts) j.erase(family->keys.experts_alias);
    else if (key == family->keys.experts_alias) j.erase(family->keys.experts);
  }
  std::string src = source;
  *this = from_json(j, src + " (--set)");
  source = src;
}

}  // namespace emo
