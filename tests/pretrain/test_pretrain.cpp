// emo pretrain end to end: the pool router with every expert in the pool trains exactly as
// the standard router; stopping at a checkpoint and resuming reproduces the pool draws bit
// for bit; two Gloo processes give the one-process load-balancing term.
#include <catch2/catch.hpp>

#include <random>

#include "core/checkpoint/checkpoint.h"
#include "finetune/ft_util.h"
#include "pretrain/pretrain.h"

using namespace emo;
using namespace emo::test;

namespace {


const std::string kCorpus = std::string(::emo::build_source_dir()) + "/data/corpus/valid.jsonl.gz";

// A small EMO (tiny's shape, 2 layers) on 96-token sequences of the valid split.
PretrainOptions small_run(const fs::path& out, RouterKind router, PoolRange pool = {}) {
  PretrainOptions p;
  p.preset = "tiny";
  p.sets = {{"num_hidden_layers", "2"}};
  p.init_seed = 3;
  p.tokenizer_dir = fs::path(::emo::build_source_dir()) / "data/tokenizers/dolma2-8k";
  p.data = kCorpus;
  p.corpus.seq_len = 96;
  p.corpus.limit = 40;
  p.router = router;
  p.pool = pool;
  p.train.out = out;
  p.train.batch_size = 4;
  p.train.max_steps = 4;
  p.train.seed = 7;
  return p;
}

std::vector<Json> metrics(const fs::path& out) { return read_jsonl(out / "metrics.jsonl"); }

void check_same_weights(const fs::path& a, const fs::path& b) {
  Checkpoint x = Checkpoint::open(a), y = Checkpoint::open(b);
  for (const auto& t : x.tensors()) {
    INFO(t.name);
    CHECK(tensor_bytes(x, t.name) == tensor_bytes(y, t.name));
  }
}


}  // namespace

TEST_CASE("emo router with pool = all routed experts trains bit for bit as the standard router", "[pretrain]") {
  TempDir dir;
  auto emo_run = small_run(dir / "emo", RouterKind::Emo, {31, 31});
  auto std_run = small_run(dir / "std", RouterKind::Standard);
  pretrain(emo_run);
  pretrain(std_run);
  auto a = metrics(dir / "emo"), b = metrics(dir / "std");
  REQUIRE(a.size() == 4);
  REQUIRE(b.size() == 4);
  for (size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i]["loss"].get<double>() == b[i]["loss"].get<double>());
    CHECK(a[i]["lb_loss"].get<double>() == b[i]["lb_loss"].get<double>());
  }
  check_same_weights(dir / "emo", dir / "std");
  // A real pool range changes the run.
  pretrain(small_run(dir / "pooled", RouterKind::Emo, {3, 8}));
  CHECK(metrics(dir / "pooled")[1]["loss"].get<double>() != a[1]["loss"].get<double>());
}

TEST_CASE("stop at a checkpoint and --resume: the same pool draws, bit-identical weights", "[pretrain][resume]") {
  TempDir dir;
  auto whole = small_run(dir / "whole", RouterKind::Emo, {3, 12});
  pretrain(whole);
  // The same run, then everything after step 2 removed, as if it had stopped there.
  auto part = small_run(dir / "part", RouterKind::Emo, {3, 12});
  part.train.save_every = 2;
  pretrain(part);
  fs::remove_all(dir / "part" / "checkpoints" / "step-000004");
  fs::remove(dir / "part" / "config.json");
  part.train.resume = true;
  PretrainResult r = pretrain(part);
  CHECK(r.train.start_step == 2);
  check_same_weights(dir / "whole", dir / "part");
  auto a = metrics(dir / "whole"), b = metrics(dir / "part");
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) CHECK(a[i]["loss"].get<double>() == b[i]["loss"].get<double>());
  // Another seed draws other pools (and another order): other weights.
  auto other = small_run(dir / "other", RouterKind::Emo, {3, 12});
  other.train.seed = 8;
  pretrain(other);
  Checkpoint x = Checkpoint::open(dir / "whole"), y = Checkpoint::open(dir / "other");
  CHECK(tensor_bytes(x, x.tensors().front().name) != tensor_bytes(y, y.tensors().front().name));
}

TEST_CASE("emo pretrain: two Gloo processes give the one-process load-balancing term", "[pretrain][ddp]") {
  TempDir dir;
  const std::string args = "pretrain --preset tiny --set num_hidden_layers=2 --init-seed 3 --data " + q(kCorpus) +
                           " --limit 40 --seq-len 96 --batch-size 4 --max-steps 3 --pool-min 3 --pool-max 12 --seed 7"
                           " --no-cache --threads 1 -q";
  RunResult one = run_emo(args + " --out " + q(dir / "one"));
  INFO(one.err);
  REQUIRE(one.code == 0);
  std::string cmd = torchrun_command(2) + " " + args + " --out " + q(dir / "two") + " > " + q(dir / "torchrun.log") + " 2>&1";
  int rc = std::system(cmd.c_str());
  INFO(read_text_file(dir / "torchrun.log"));
  REQUIRE(rc == 0);
  auto a = metrics(dir / "one"), b = metrics(dir / "two");
  REQUIRE(a.size() == 3);
  REQUIRE(b.size() == 3);
  for (size_t i = 0; i < a.size(); ++i) {
    INFO("step " << i + 1);
    CHECK(std::abs(a[i]["lb_loss"].get<double>() - b[i]["lb_loss"].get<double>()) < 1e-6);
    CHECK(std::abs(a[i]["z_loss"].get<double>() - b[i]["z_loss"].get<double>()) < 1e-4);
    CHECK(std::abs(a[i]["loss"].get<double>() - b[i]["loss"].get<double>()) < 1e-5);
    CHECK(a[i]["expert_load_entropy"] == b[i]["expert_load_entropy"]);
  }
  auto prov = read_text_file(dir / "two" / "provenance.yaml");
  CHECK(prov.find("world_size: 2") != std::string::npos);
  CHECK(prov.find("router: emo") != std::string::npos);
}

TEST_CASE("emo pretrain CLI writes the model, init/ and metrics, takes a scale, and refuses bad pools and an existing OUT",
          "[pretrain][cli]") {
  TempDir dir;
  const std::string base = "pretrain --preset tiny --set num_hidden_layers=2 --data " + q(kCorpus) +
                           " --limit 20 --seq-len 64 --batch-size 2 --max-steps 2 --no-cache -q";
  RunResult r = run_emo(base + " --out " + q(dir / "m") + " --json");
  INFO(r.err);
  REQUIRE(r.code == 0);
  Json j = Json::parse(r.out);
  CHECK(j["router"] == "emo");
  CHECK(j["pool"] == Json::array({3, 31}));
  CHECK(fs::exists(dir / "m" / "config.json"));
  CHECK(fs::exists(dir / "m" / "init" / "config.json"));
  CHECK(fs::exists(dir / "m" / "tokenizer.json"));
  CHECK(metrics(dir / "m").size() == 2);
  RunResult again = run_emo(base + " --out " + q(dir / "m"));
  CHECK(again.code != 0);
  CHECK(again.err.find("--resume") != std::string::npos);
  RunResult bad = run_emo(base + " --out " + q(dir / "b") + " --pool-min 2");
  CHECK(bad.code != 0);
  CHECK(bad.err.find("top-k") != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "b"));
  // The model evaluates and routes per token like any other checkpoint.
  RunResult insp = run_emo("inspect " + q(dir / "m"));
  CHECK(insp.code == 0);
  CHECK(read_text_file(dir / "m" / "provenance.yaml").find("lb_weight: 0.1") != std::string::npos);

  // --scale small: pools from max(k, ceil(31 / 8)), load balancing 0.01, WSD at 2e-3 falling to
  // 0 over the last 20%; a flag given wins.
  RunResult small = run_emo(base + " --out " + q(dir / "s") + " --scale small --json");
  INFO(small.err);
  REQUIRE(small.code == 0);
  CHECK(Json::parse(small.out)["pool"] == Json::array({4, 31}));
  const std::string prov = read_text_file(dir / "s" / "provenance.yaml");
  CHECK(prov.find("lb_weight: 0.01") != std::string::npos);
  CHECK(prov.find("scale: small") != std::string::npos);
  CHECK(prov.find("schedule: wsd") != std::string::npos);
  CHECK(prov.find("lr: 0.002") != std::string::npos);
  CHECK(prov.find("decay_ratio: 0.2") != std::string::npos);
  CHECK(prov.find("final_lr_ratio: 0\n") != std::string::npos);
  RunResult given =
      run_emo(base + " --out " + q(dir / "g") + " --scale small --lb-weight 0.05 --pool-min 6 --pool-free 0.375 --lr 0.001 --decay-ratio 0.5 --gate-probs unpooled --json");
  REQUIRE(given.code == 0);
  CHECK(Json::parse(given.out)["pool"] == Json::array({6, 31}));
  const std::string given_prov = read_text_file(dir / "g" / "provenance.yaml");
  CHECK(given_prov.find("lb_weight: 0.05") != std::string::npos);
  CHECK(given_prov.find("pool_free: 0.375") != std::string::npos);
  CHECK(given_prov.find("gate_probs: unpooled") != std::string::npos);
  CHECK(given_prov.find("schedule: wsd") != std::string::npos);
  CHECK(given_prov.find("lr: 0.001") != std::string::npos);
  CHECK(given_prov.find("decay_ratio: 0.5") != std::string::npos);
  // The paper's scale (the default): cosine at 4e-3 to 0.1 of it.
  const std::string paper_prov = read_text_file(dir / "m" / "provenance.yaml");
  CHECK(paper_prov.find("schedule: cosine") != std::string::npos);
  CHECK(paper_prov.find("lr: 0.004") != std::string::npos);
  CHECK(paper_prov.find("final_lr_ratio: 0.1") != std::string::npos);
  // Recorded only when asked, so runs without them keep their settings.
  CHECK(read_text_file(dir / "m" / "provenance.yaml").find("pool_free") == std::string::npos);
  CHECK(read_text_file(dir / "m" / "provenance.yaml").find("gate_probs") == std::string::npos);
  CHECK(read_text_file(dir / "m" / "provenance.yaml").find("decay_ratio") == std::string::npos);
  RunResult long_decay = run_emo(base + " --out " + q(dir / "d") + " --schedule wsd --decay-ratio 1.5");
  CHECK(long_decay.code != 0);
  CHECK(long_decay.err.find("--decay-ratio") != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "d"));
  RunResult all_free = run_emo(base + " --out " + q(dir / "f") + " --pool-free 1");
  CHECK(all_free.code != 0);
  CHECK(all_free.err.find("--pool-free") != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "f"));
  RunResult bad_gate = run_emo(base + " --out " + q(dir / "w") + " --gate-probs pool");
  CHECK(bad_gate.code != 0);
  CHECK(bad_gate.err.find("--gate-probs") != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "w"));
  RunResult unknown = run_emo(base + " --out " + q(dir / "u") + " --scale huge");
  CHECK(unknown.code != 0);
  CHECK(unknown.err.find("huge") != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "u"));
}
