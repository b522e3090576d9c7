// What every subcommand shares: the global flags, where the shipped data lives, the
// --set parser, and printing results (stdout) as text or JSON.
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <utility>
#include <vector>

#include "core/checkpoint/checkpoint.h"
#include "core/checkpoint/experts.h"
#include "core/io/json.h"
#include "core/model/loaded.h"
#include "core/model/model.h"
#include "core/text/dataset.h"
#include "core/text/tokenizer.h"
#include "core/util/fields.h"
#include "core/util/fs.h"

namespace emo::cli {

struct Globals {
  int threads = 0;  // 0: all cores
  bool quiet = false;
  bool verbose = false;
  std::vector<std::string> argv;  // the command line, for provenance
};
Globals& globals();

// The project's data/ folder (tokenizers, corpus, GSM8K): $EMO_DATA, else data/ beside
// the executable's install prefix, else the source tree it was built from.
fs::path data_root();
// The shipped corpus split "train" or "valid": data_root()/corpus/SPLIT.jsonl.gz.
fs::path corpus_split_file(const std::string& split);

// Thrown by a command that finished its work but must exit non-zero (diff --exit-code,
// merge --strict): main returns the code without printing an error.
struct ExitStatus {
  int code;
};

void print_json(const Json& j);
void print_line(const std::string& s);

// Applies --threads and checks the BLAS once: call before model work.
void prepare_compute();

// emo::load_model (core/model/loaded.h) after prepare_compute(): --threads applies first.
LoadedModel load_model(const std::string& dir, const std::string& experts_file = "", const std::string& device = "auto",
                       const std::string& tokenizer_path = "", bool need_tokenizer = true);
// Adds --experts FILE and --device to a command.
void add_model_flags(CLI::App* cmd, std::string& experts, std::string& device);

// Commands register themselves: each cmd_*.cpp ends with
//   EMO_REGISTER_COMMAND(order, add_name);
// and main.cpp adds them in `order`, which is the order `emo --help` lists them.
using AddCommand = void (*)(CLI::App& app);
struct CommandRegistration {
  CommandRegistration(int order, AddCommand add);
};
std::vector<std::pair<int, AddCommand>>& command_registry();
#define EMO_REGISTER_COMMAND(order, fn) static ::emo::cli::CommandRegistration emo_register_##fn(order, fn)

}  // namespace emo::cli
