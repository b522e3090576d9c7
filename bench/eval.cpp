// bench/eval: `emo eval ppl` against transformers on the same windows. emo's
// evaluate_perplexity (what the command runs) scores the corpus valid split; the same
// windows (perplexity_windows: each document cut into pieces of --window tokens, longest
// first) go to transformers' OlmoeForCausalLM (tests/reference/hf_peer.py loss: fp32, the
// same threads, the same batches of right-padded windows). The mean loss must agree within
// 1e-4; the ratio is of the forward time (transformers') over emo's evaluation time, the
// two run in turn, --repeat times each, medians.
//
//   bench_eval [--model DIR (default: a random OLMoE of the bench_train shape)]
//              [--data FILE (data/corpus/valid.jsonl.gz)] [--limit N (40 documents)]
//              [--window T (256)] [--batch B (8)] [--repeat R (3)] [--threads N]
#include <cstring>
#include <sstream>

#include "bench/bench_util.h"
#include "core/checkpoint/init.h"
#include "core/io/safetensors.h"
#include "core/model/runtime.h"
#include "core/model/tensor_bridge.h"
#include "core/util/log.h"
#include "eval/perplexity.h"

using namespace emo;
using namespace emo::bench;

namespace {

// An OLMoE of bench_train's olmoe shape, random, fp32, with the shipped 8k tokenizer.
fs::path random_olmoe(const fs::path& dir) {
  Json j = parse_json(find_preset("tiny-olmoe").config_json, "tiny-olmoe");
  j["hidden_size"] = 512, j["num_attention_heads"] = 8, j["num_key_value_heads"] = 8;
  j["num_experts"] = 64, j["num_experts_per_tok"] = 8, j["intermediate_size"] = 256;
  ModelConfig c = ModelConfig::from_json(j, "olmoe shape");
  fs::remove_all(dir);
  fs::create_directories(dir);
  InitOptions io;
  io.dtype = DType::F32;
  write_initialised_model(dir, c, io);
  fs::copy_file(fs::path(::emo::build_source_dir()) / "data/tokenizers/dolma2-8k/tokenizer.json", dir / "tokenizer.json");
  return dir;
}

// The windows as the peer reads them: "ids" [W, T] right-padded with `pad`, "mask" [W, T]
// 1 where a token is scored as a target (every real token after the first).
void write_windows(const std::vector<PplWindow>& windows, int64_t window, int64_t pad, const fs::path& file) {
  const int64_t W = int64_t(windows.size());
  auto ids = torch::full({W, window}, pad, torch::kInt64), mask = torch::zeros({W, window}, torch::kInt64);
  for (int64_t w = 0; w < W; ++w) {
    const auto& v = windows[size_t(w)].ids;
    ids[w].narrow(0, 0, int64_t(v.size())).copy_(torch::tensor(v, torch::kInt64));
    mask[w].narrow(0, 1, int64_t(v.size()) - 1).fill_(1);
  }
  write_tensors(file, {{"ids", ids}, {"mask", mask}});
}

}  // namespace

int main(int argc, char** argv) {
  bench::check_flag_pairs(argc, argv, "bench_eval [--model DIR] [--data FILE] [--limit N] [--window T] [--batch B] "
                                     "[--repeat R] [--threads N]");
  std::string model_dir, data = std::string(::emo::build_source_dir()) + "/data/corpus/valid.jsonl.gz";
  int64_t limit = 40, window = 256, batch = 8;
  int repeat = 3, threads = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--model")) model_dir = argv[i + 1];
    else if (!std::strcmp(argv[i], "--data")) data = argv[i + 1];
    else if (!std::strcmp(argv[i], "--limit")) limit = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--window")) window = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--batch")) batch = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--repeat")) repeat = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "bench_eval: unknown flag %s\n", argv[i]);
      return 2;
    }
  }
  configure_threads(threads);
  set_log_level(LogLevel::Warn);
  const fs::path dir = fs::temp_directory_path() / "emo-bench-eval";
  fs::create_directories(dir);
  if (model_dir.empty()) model_dir = random_olmoe(dir / "model").string();
  Checkpoint ck = Checkpoint::open(model_dir);
  Model model = Model::load(ck);
  Tokenizer tok = Tokenizer::load((fs::path(model_dir) / "tokenizer.json").string());
  TextFilter filter;
  filter.limit = size_t(limit);
  const std::vector<TextDoc> docs = load_text_docs(data, filter).docs;
  const std::vector<PplWindow> windows = perplexity_windows(tok, docs, window);
  write_windows(windows, window, ck.config().pad_token_id.value_or(0), dir / "windows.safetensors");
  PeerProcess peer({reference_python(), peer_script(), "loss-server", "--model", model_dir, "--windows",
                    (dir / "windows.safetensors").string(), "--batch", std::to_string(batch), "--threads",
                    std::to_string(at::get_num_threads())});
  PplOptions o;
  o.window = window;
  o.batch = batch;
  std::vector<double> emo_s, peer_s;
  double emo_loss = 0, peer_loss = 0;
  for (int r = 0; r < repeat; ++r) {
    PplResult ours = evaluate_perplexity(model, tok, docs, o);
    emo_s.push_back(ours.seconds);
    emo_loss = ours.by_domain.at("all").loss();
    std::istringstream reply(peer.request("run"));
    double sum = 0, seconds = 0;
    uint64_t count = 0;
    reply >> sum >> count >> seconds;
    peer_s.push_back(seconds);
    peer_loss = sum / double(count);
  }
  std::printf("emo eval ppl vs transformers (%s), %zu documents, %zu windows of <= %lld tokens, batch %lld, %d threads\n",
              ck.config().family->hf_class.empty() ? "its class" : ck.config().family->hf_class.c_str(), docs.size(), windows.size(),
              (long long)window, (long long)batch, at::get_num_threads());
  std::printf("  mean loss: emo %.6f, transformers %.6f (|diff| %.2e, goal <= 1e-4)\n", emo_loss, peer_loss,
              std::abs(emo_loss - peer_loss));
  std::printf("  seconds (median of %d): emo %.3f, transformers %.3f; ratio transformers/emo = %.2fx\n", repeat,
              median(emo_s), median(peer_s), median(peer_s) / median(emo_s));
  fs::remove_all(dir);
  return std::abs(emo_loss - peer_loss) <= 1e-4 ? 0 : 1;
}
