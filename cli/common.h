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
#include "core/model/model.h"
#include "core/text/dataset.h"
#include "core/text/tokenizer.h"
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
// Perplexity documents of `corpus` (default: the shipped valid split), at most
// `per_domain` of each domain (0: all).
std::vector<TextDoc> ppl_docs_for(std::string corpus, size_t per_domain);

// "key=value" pairs from repeated --set (or `flag`) flags; emo::Error for a malformed one.
std::vector<std::pair<std::string, std::string>> parse_sets(const std::vector<std::string>& sets,
                                                            const std::string& flag = "--set");

// "1,2,3" or "[1, 2, 3]" -> ids; emo::Error naming `flag` and the bad item.
std::vector<int64_t> parse_id_list(const std::string& text, const std::string& flag);

// Thrown by a command that finished its work but must exit non-zero (diff --exit-code,
// merge --strict): main returns the code without printing an error.
struct ExitStatus {
  int code;
};

void print_json(const Json& j);
void print_line(const std::string& s);

// Applies --threads and checks the BLAS once: call before model work.
void prepare_compute();

// A model ready for inference: the checkpoint, weights on the device (fp32 on CPU, bf16
// on GPU), its tokenizer (tokenizer.json in the model directory unless --tokenizer), and
// the routing restriction of --experts, if given.
struct LoadedModel {
  std::unique_ptr<Checkpoint> checkpoint;
  std::unique_ptr<Model> model;
  std::unique_ptr<Tokenizer> tokenizer;
  ExpertSelection experts;
  RoutingControl routing;
  bool restricted = false;
};
LoadedModel load_model(const std::string& dir, const std::string& experts_file = "", const std::string& device = "auto",
                       const std::string& tokenizer_path = "", bool need_tokenizer = true);
const RoutingControl* routing_of(const LoadedModel& m);
// "auto": cuda when LibTorch sees a GPU, else cpu.
LoadOptions load_options_for(const std::string& device);
// Why --device cuda cannot be had here: a CPU-only LibTorch, or no GPU the CUDA one sees.
std::string no_cuda_reason();
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
