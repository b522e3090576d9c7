#include "cli/common.h"

#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <map>

#include "core/model/compat.h"
#include "core/model/generate.h"
#include "core/model/runtime.h"
#include "core/text/dataset.h"
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

fs::path corpus_split_file(const std::string& split) { return corpus_split_path(data_root(), split); }

void print_json(const Json& j) { std::cout << j.dump(2) << std::endl; }
void print_line(const std::string& s) { std::cout << s << std::endl; }

void prepare_compute() {
  configure_threads(globals().threads);
  check_blas_speed_once();
}

void add_model_flags(CLI::App* cmd, std::string& experts, std::string& device) {
  cmd->add_option("--experts", experts, "Experts file (JSON/YAML, layer -> kept routed expert ids): run the full model "
                                        "restricted to that module");
  cmd->add_option("--device", device, "auto, cpu or cuda (auto: cuda when available)");
}

LoadedModel load_model(const std::string& dir, const std::string& experts_file, const std::string& device,
                       const std::string& tokenizer_path, bool need_tokenizer) {
  prepare_compute();
  return emo::load_model(dir, experts_file, device, tokenizer_path, need_tokenizer);
}

}  // namespace emo::cli
