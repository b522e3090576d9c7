#include "cli/common.h"

#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <map>

#include "core/model/compat.h"
#include "core/model/generate.h"
#include "core/model/runtime.h"
#include "core/util/error.h"
#include "core/util/source_dir.h"

namespace emo::cli {

std::vector<std::pair<int, AddCommand>>& command_registry() {
  static std::vector<std::pair<int, AddCommand>> registry;
  return registry;
}

CommandRegistration::CommandRegistration(int order, AddCommand add) { command_registry().emplace_back(order, add); }

Globals& globals() {
  static Globals g;
  return g;
}

namespace {
fs::path executable_dir() {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::path() : exe.parent_path();
}
}  // namespace

fs::path data_root() {
  if (const char* env = std::getenv("EMO_DATA")) return env;
  std::error_code ec;
  fs::path installed = executable_dir() / ".." / "share" / "emo" / "data";
  if (fs::is_directory(installed, ec)) return installed.lexically_normal();
  return fs::path(build_source_dir()) / "data";
}

fs::path corpus_split_file(const std::string& split) { return data_root() / "corpus" / (split + ".jsonl.gz"); }

std::vector<TextDoc> ppl_docs_for(std::string corpus, size_t per_domain) {
  if (corpus.empty()) corpus = corpus_split_file("valid").string();
  TextDocs docs = load_text_docs(corpus);
  std::vector<TextDoc> kept;
  std::map<std::string, size_t> seen;
  for (auto& d : docs.docs)
    if (!per_domain || seen[d.domain]++ < per_domain) kept.push_back(std::move(d));
  if (kept.empty()) fail(corpus, "", "no documents");
  return kept;
}

std::vector<std::pair<std::string, std::string>> parse_sets(const std::vector<std::string>& sets, const std::string& flag) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& s : sets) {
    auto eq = s.find('=');
    if (eq == std::string::npos || eq == 0) fail(flag, s, "expected key=value");
    out.emplace_back(s.substr(0, eq), s.substr(eq + 1));
  }
  return out;
}

std::vector<int64_t> parse_id_list(const std::string& text, const std::string& flag) {
  std::string list;
  for (char c : text)
    if (c != '[' && c != ']' && !std::isspace(static_cast<unsigned char>(c))) list.push_back(c);
  std::vector<int64_t> ids;
  for (size_t pos = 0; pos <= list.size();) {
    size_t comma = list.find(',', pos);
    std::string item = list.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    try {
      size_t used = 0;
      ids.push_back(std::stoll(item, &used));
      if (used != item.size()) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      fail(flag, item, "not a token id");
    }
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return ids;
}

void print_json(const Json& j) { std::cout << j.dump(2) << std::endl; }
void print_line(const std::string& s) { std::cout << s << std::endl; }

void prepare_compute() {
  configure_threads(globals().threads);
  check_blas_speed_once();
}

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

void add_model_flags(CLI::App* cmd, std::string& experts, std::string& device) {
  cmd->add_option("--experts", experts, "Experts file (JSON/YAML, layer -> kept routed expert ids): run the full model "
                                        "restricted to that module");
  cmd->add_option("--device", device, "auto, cpu or cuda (auto: cuda when available)");
}

LoadedModel load_model(const std::string& dir, const std::string& experts_file, const std::string& device,
                       const std::string& tokenizer_path, bool need_tokenizer) {
  prepare_compute();
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

}  // namespace emo::cli
