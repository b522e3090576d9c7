// tokenize, logits, generate and eval ppl from the outside.
#include <catch2/catch.hpp>

#include "cli_util.h"
#include "core/io/json.h"
#include "core/io/safetensors.h"
#include "core/model/tensor_bridge.h"

using namespace emo;
using namespace emo::test;

namespace {
// One tiny model shared by the tests of this file.
const fs::path& tiny_model() {
  static TempDir dir;
  static fs::path path = [] {
    fs::path p = dir / "tiny";
    RunResult r = run_emo("init --preset tiny --seed 5 --out " + p.string());
    if (r.code != 0) throw std::runtime_error(r.err);
    return p;
  }();
  return path;
}
}  // namespace

TEST_CASE("emo tokenize: ids and back", "[cli]") {
  std::string tok = (source_dir() / "data/tokenizers/dolma2").string();
  RunResult r = run_emo("tokenize --tokenizer " + tok + " --text 'Hello world'");
  REQUIRE(r.code == 0);
  CHECK(Json::parse(r.out) == Json::parse("[9906, 1917]"));
  RunResult d = run_emo("tokenize --tokenizer " + tok + " --decode --text '[9906,1917]'");
  CHECK(d.out == "Hello world\n");
  RunResult bad = run_emo("tokenize --tokenizer " + tok + " --decode --text '1,x'");
  CHECK(bad.code != 0);
  CHECK(bad.err.find("not a token id") != std::string::npos);
}

TEST_CASE("emo logits --json equals the Python reference on a shipped preset", "[cli][reference]") {
  RunResult r = run_emo("logits --model " + tiny_model().string() + " --ids 11,22,33,44 --json");
  INFO(r.err);
  REQUIRE(r.code == 0);
  Json ours = Json::parse(r.out);
  TempDir tmp;
  std::string cmd = reference_script("ref_forward.py") + " --model " +
                    tiny_model().string() + " --ids 11,22,33,44 --out " + (tmp / "ref.safetensors").string() + " > /dev/null";
  REQUIRE(std::system(cmd.c_str()) == 0);
  auto f = SafetensorsFile::open((tmp / "ref.safetensors").string());
  auto ref = tensor_from_view(f->view("logits"))[0];
  REQUIRE(ours.size() == 4);
  double worst = 0;
  for (int64_t t = 0; t < 4; ++t)
    for (int64_t v = 0; v < ref.size(1); ++v)
      worst = std::max(worst, std::abs(ours[size_t(t)][size_t(v)].get<double>() - ref[t][v].item<double>()));
  CHECK(worst <= 1e-5);
  RunResult bad = run_emo("logits --model " + tiny_model().string() + " --ids 1,9000");
  CHECK(bad.code != 0);
  CHECK(bad.err.find("token id 9000 out of range for vocab_size 8002") != std::string::npos);
  CHECK(count_lines(bad.err) == 1);
}

TEST_CASE("emo generate is greedy and deterministic, --json gives completions", "[cli]") {
  std::string args = "generate --model " + tiny_model().string() + " --prompt 'The answer is' --max-new-tokens 8";
  RunResult a = run_emo(args), b = run_emo(args);
  REQUIRE(a.code == 0);
  CHECK(a.out == b.out);
  CHECK(a.out.rfind("The answer is", 0) == 0);
  RunResult j = run_emo(args + " --json");
  Json rec = Json::parse(j.out);
  CHECK(rec["tokens"].size() <= 8);
  CHECK(a.out == "The answer is" + rec["completion"].get<std::string>() + "\n");
  RunResult bad = run_emo("generate --model " + tiny_model().string() + " --prompt 'x' --max-new-tokens 5000");
  CHECK(bad.code != 0);
  CHECK(bad.err.find("exceeds the model's context") != std::string::npos);
}

TEST_CASE("emo eval ppl: per-domain numbers, a random model is near uniform", "[cli]") {
  std::string data = (source_dir() / "data/corpus/valid.jsonl.gz").string();
  RunResult r = run_emo("eval ppl --model " + tiny_model().string() + " --data " + data + " --domain code --limit 5 --json");
  INFO(r.err);
  REQUIRE(r.code == 0);
  Json j = Json::parse(r.out);
  CHECK(j["domains"].contains("code"));
  CHECK(j["domains"].size() == 2);  // code and all
  double loss = j["domains"]["code"]["loss"].get<double>();
  CHECK(std::abs(loss - std::log(8002.0)) < 0.1);  // untrained: about ln(vocab)
  CHECK(j["domains"]["code"]["bits_per_byte"].get<double>() > 0);
  RunResult none = run_emo("eval ppl --model " + tiny_model().string() + " --data " + data + " --domain poetry");
  CHECK(none.code != 0);
  CHECK(none.err.find("no documents of domain poetry") != std::string::npos);
}

// --device cuda where there is no GPU to be had: one line saying why (a CPU-only LibTorch,
// or a CUDA one that sees no device), exit 1, nothing written. On a GPU machine the same
// commands run.
TEST_CASE("a GPU asked for where there is none (--device cuda): one clear line, not a crash", "[cli][bad-input]") {
  TempDir dir;
  RunResult init = run_emo("init --preset micro --seed 1 --out " + q(dir / "m"));
  REQUIRE(init.code == 0);
  const std::string model = q(dir / "m");
  for (const std::string& args :
       {"logits --model " + model + " --ids 1,2,3 --device cuda",
        "finetune --model " + model + " --data " + q(source_dir() / "data/gsm8k/train.jsonl") +
            " --limit 4 --max-steps 1 --device cuda --out " + q(dir / "ft")}) {
    INFO(args);
    RunResult r = run_emo(args);
    INFO(r.err);
    if (torch::cuda::is_available()) {
      CHECK(r.code == 0);
      continue;
    }
    CHECK(r.code == 1);
    CHECK(count_lines(r.err) == 1);
    CHECK((r.err.find("CPU-only LibTorch") != std::string::npos ||
           r.err.find("sees no CUDA device") != std::string::npos));
    CHECK_FALSE(fs::exists(dir / "ft"));
  }
}
