// emo finetune from the outside: it learns a task, freezes what it should, resumes after
// kill -9 to the same bits, keeps an extracted module mergeable, and refuses bad input.
#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <random>
#include <set>
#include <thread>

#include "core/checkpoint/content_hash.h"
#include "core/checkpoint/provenance.h"
#include "core/io/sha256.h"
#include "core/model/generate.h"
#include "core/model/runtime.h"
#include "core/text/tokenizer.h"
#include "finetune/train_state.h"
#include "core/io/sha256.h"
#include "ft_util.h"
#include "surgery/extract.h"

using namespace emo;
using namespace emo::test;

namespace {

// One tiny model (4 layers, hidden 128, 31 routed + 1 shared experts) for this file.
const fs::path& tiny() {
  static TempDir dir;
  static fs::path p = make_model(dir.path(), "tiny", "tiny", 0);
  return p;
}


// Greedy exact match of a model on reversal items.
double exact_match(const fs::path& model_dir, const std::vector<ReversalItem>& items) {
  configure_threads(1);
  Checkpoint ck = Checkpoint::open(model_dir);
  Model model = Model::load(ck);
  Tokenizer tok = Tokenizer::load((model_dir / "tokenizer.json").string());
  std::vector<std::vector<int64_t>> prompts;
  for (const auto& it : items) {
    auto ids = tok.encode(it.prompt);
    prompts.emplace_back(ids.begin(), ids.end());
  }
  GenerateOptions go;
  go.max_new_tokens = 8;
  go.stop_ids = {8000};
  Generation g = generate(model, prompts, go);
  size_t ok = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    std::vector<int32_t> t;
    for (int64_t id : g.tokens[i])
      if (id != 8000) t.push_back(int32_t(id));
    ok += tok.decode(t) == items[i].completion && !g.tokens[i].empty() && g.tokens[i].back() == 8000;
  }
  return double(ok) / double(items.size());
}

}  // namespace

TEST_CASE("emo finetune learns a task the model cannot do (string reversal) to >= 95% exact match",
          "[finetune][cli][acceptance]") {
  TempDir dir;
  auto items = reversal_items(3100, 11);
  std::vector<ReversalItem> train(items.begin(), items.begin() + 3000), held_out(items.begin() + 3000, items.end());
  write_prompt_completion(dir / "train.jsonl", train);
  double before = exact_match(tiny(), held_out);
  CHECK(before <= 0.05);
  fs::path out = dir / "ft";
  RunResult r = run_emo("finetune --model " + q(tiny()) + " --data " + q(dir / "train.jsonl") + " --out " + q(out) +
                        " --lr 2e-3 --batch-size 32 --max-steps 250 --schedule cosine --warmup-steps 25 --threads 1 -q");
  INFO(r.err);
  REQUIRE(r.code == 0);
  auto metrics = read_jsonl(out / "metrics.jsonl");
  REQUIRE(metrics.size() == 250);
  CHECK(metrics.front()["ce_loss"].get<double>() > 3.0);
  CHECK(metrics.back()["ce_loss"].get<double>() < 0.1);
  for (const char* k : {"step", "loss", "ce_loss", "lb_loss", "z_loss", "lr", "grad_norm", "tokens_per_second",
                        "expert_load_entropy"})
    CHECK(metrics.back().contains(k));
  CHECK(metrics.back()["expert_load_entropy"].size() == 4);
  double after = exact_match(out, held_out);
  INFO("held-out exact match before " << before << ", after " << after);
  CHECK(after >= 0.95);
  // The output is a normal checkpoint with its provenance.
  Checkpoint ck = Checkpoint::open(out);
  auto prov = Provenance::load(out);
  REQUIRE(prov);
  CHECK(prov->command == "finetune");
  CHECK(prov->output_hash == content_hash(ck));
  CHECK(prov->settings["lr"].as<double>() == Approx(2e-3));
  CHECK(prov->settings["batch_size"].as<int>() == 32);
  bool data_input = false;
  for (const auto& in : prov->inputs) data_input |= in.role == "data" && in.hash.rfind("sha256:", 0) == 0;
  CHECK(data_input);
  CHECK(prov->parents.size() == 1);
  CHECK(fs::exists(out / "README.md"));
  CHECK(fs::exists(out / "tokenizer.json"));
  CHECK(fs::exists(checkpoint_dir(out, 250) / "optimizer.safetensors"));
}

TEST_CASE("freeze modes: frozen tensors stay byte-identical, trained ones move", "[finetune][cli][freeze]") {
  TempDir dir;
  write_prompt_completion(dir / "d.jsonl", reversal_items(64, 3));
  Checkpoint base = Checkpoint::open(tiny());
  const int64_t E = base.config().num_experts, S = base.config().num_shared_experts;
  for (std::string mode : {"all", "routed", "routed_shared", "routed_shared_router", "non_moe"}) {
    INFO(mode);
    fs::path out = dir / mode;
    RunResult r = run_emo("finetune --model " + q(tiny()) + " --data " + q(dir / "d.jsonl") + " --out " + q(out) +
                          " --train " + mode + " --lr 1e-2 --batch-size 16 --max-steps 2 --warmup-steps 0 --threads 1 -q");
    INFO(r.err);
    REQUIRE(r.code == 0);
    Checkpoint ck = Checkpoint::open(out);
    std::map<std::string, int> changed, frozen_changed, trained_total;
    for (const CanonicalTensor& t : base.tensors()) {
      bool shared = t.role == Role::Expert && t.expert >= E - S;
      bool moe_mode = mode.rfind("routed", 0) == 0;
      bool trains = mode == "all" ||
                    (moe_mode && t.role == Role::Expert && (mode != "routed" || !shared)) ||
                    (t.role == Role::Router && mode == "routed_shared_router") ||
                    (mode == "non_moe" && t.role != Role::Expert && t.role != Role::Router);
      bool same = tensor_bytes(base, t.name) == tensor_bytes(ck, t.name);
      std::string role = role_name(t.role) + std::string(shared ? "/shared" : "");
      if (!trains) {
        INFO(t.name);
        CHECK(same);
      } else {
        trained_total[role]++;
        changed[role] += !same;
      }
    }
    // Every role that trains moved (experts no token picked may stay).
    for (const auto& [role, n] : trained_total) {
      INFO(role);
      CHECK(changed[role] > 0);
    }
  }
}

// OpenBLAS sums depend on its thread count, which it reads from the environment when it
// loads (torchrun sets OMP_NUM_THREADS=1): --threads sets it, so the environment does not
// change a run's bits.
TEST_CASE("the thread count (--threads) decides the bits, not OMP_NUM_THREADS or OPENBLAS_NUM_THREADS", "[finetune][cli]") {
  TempDir dir;
  write_prompt_completion(dir / "d.jsonl", reversal_items(32, 7));
  const std::string common = "finetune --model " + q(tiny()) + " --data " + q(dir / "d.jsonl") +
                             " --lr 3e-3 --batch-size 8 --max-steps 2 --threads 1 -q --out ";
  RunResult plain = run_emo(common + q(dir / "plain"));
  RunResult env = run_emo(common + q(dir / "env"), "env OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2");
  RunResult one = run_emo(common + q(dir / "one"), "env OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1");
  INFO(plain.err << env.err << one.err);
  REQUIRE(plain.code == 0);
  REQUIRE(env.code == 0);
  REQUIRE(one.code == 0);
  const std::string want = hash_file((dir / "plain" / "model.safetensors").string());
  CHECK(hash_file((dir / "env" / "model.safetensors").string()) == want);
  CHECK(hash_file((dir / "one" / "model.safetensors").string()) == want);
}

TEST_CASE("kill -9 at a random step, --resume: the same final bits as an uninterrupted run", "[finetune][cli][resume]") {
  TempDir dir;
  write_prompt_completion(dir / "d.jsonl", reversal_items(200, 5));
  const std::string common = "finetune --model " + q(tiny()) + " --data " + q(dir / "d.jsonl") +
                             " --lr 3e-3 --batch-size 16 --max-steps 16 --save-every 3 --z-loss-weight 0.001 --threads 1 -q";
  RunResult whole = run_emo(common + " --out " + q(dir / "whole"));
  INFO(whole.err);
  REQUIRE(whole.code == 0);

  std::random_device rd;
  const int kill_at = 4 + int(rd() % 10);  // after step 4..13 of 16
  INFO("killed after step " << kill_at);
  fs::path out = dir / "killed";
  std::string cmd = emo_exe() + " " + common + " --out " + q(out) + " > /dev/null 2>&1";
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    setpgid(0, 0);
    execl("/bin/sh", "sh", "-c", ("exec " + cmd).c_str(), (char*)nullptr);
    _exit(127);
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(3);
  while (std::chrono::steady_clock::now() < deadline) {
    std::error_code ec;
    if (fs::exists(out / "metrics.jsonl", ec) && count_lines(read_text_file(out / "metrics.jsonl")) >= kill_at) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  REQUIRE(WIFSIGNALED(status));
  REQUIRE_FALSE(fs::exists(out / "config.json"));  // it really was cut short
  auto ck = latest_checkpoint(out);
  RunResult resumed = run_emo(common + " --out " + q(out) + " --resume");
  INFO(resumed.err);
  REQUIRE(resumed.code == 0);
  CHECK(file_bytes(out / "model.safetensors") == file_bytes(dir / "whole" / "model.safetensors"));
  // The log is the uninterrupted run's, step for step.
  auto a = read_jsonl(dir / "whole" / "metrics.jsonl"), b = read_jsonl(out / "metrics.jsonl");
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i]["step"] == b[i]["step"]);
    CHECK(a[i]["loss"].get<double>() == b[i]["loss"].get<double>());
  }
  auto prov = Provenance::load(out);
  REQUIRE(prov);
  if (ck) CHECK(prov->extra["resumed_from"].as<std::string>() == ck->string());

  // Refuses a checkpoint of other settings or of another model, and says what differs.
  std::string other_lr = common;
  other_lr.replace(other_lr.find("--lr 3e-3"), 9, "--lr 1e-3");
  RunResult lr = run_emo(other_lr + " --out " + q(dir / "whole") + " --resume");
  CHECK(lr.code != 0);
  CHECK(lr.err.find("lr: 0.003 (checkpoint) vs 0.001 (now)") != std::string::npos);
  fs::path other = make_model(dir.path(), "other", "tiny", 9);
  std::string other_cmd = common;
  other_cmd.replace(other_cmd.find(q(tiny())), q(tiny()).size(), q(other));
  RunResult model = run_emo(other_cmd + " --out " + q(dir / "whole") + " --resume");
  CHECK(model.code != 0);
  CHECK(model.err.find("model: sha256:") != std::string::npos);
  RunResult exists = run_emo(common + " --out " + q(dir / "whole"));
  CHECK(exists.code != 0);
  CHECK(exists.err.find("--resume") != std::string::npos);
}

TEST_CASE("finetuning an extracted module changes only its routed experts and keeps it mergeable",
          "[finetune][cli][module]") {
  TempDir dir;
  Checkpoint parent = Checkpoint::open(tiny());
  std::string parent_hash = content_hash(parent);
  ExpertSelection sel;
  for (int l = 0; l < 4; ++l) sel.kept[l] = {1, 4, 9, 16, 25, 30};
  ExtractPlan plan = plan_extract(parent, sel, parent_hash);
  fs::path module = dir / "module";
  {
    AtomicDir out(module, false);
    Provenance prov("extract");
    prov.add_parent("model", tiny(), parent_hash);
    prov.output_hash = write_extract(parent, plan, out.path());
    prov.write(out.path());
    out.commit();
  }
  Checkpoint mod = Checkpoint::open(module);
  write_prompt_completion(dir / "d.jsonl", reversal_items(64, 4));
  fs::path out = dir / "ft";
  RunResult r = run_emo("finetune --model " + q(module) + " --data " + q(dir / "d.jsonl") + " --out " + q(out) +
                        " --train routed --lr 1e-2 --batch-size 16 --max-steps 3 --warmup-steps 0 --threads 1 -q");
  INFO(r.err);
  REQUIRE(r.code == 0);
  Checkpoint ft = Checkpoint::open(out);
  // The module's config, its emo_module record (what merge reads) included, is unchanged.
  CHECK(ft.config().raw.at(kModuleKey) == mod.config().raw.at(kModuleKey));
  CHECK(ft.config().model_defining() == mod.config().model_defining());
  auto info = ModuleInfo::of(ft.config());
  REQUIRE(info);
  CHECK(info->parent_hash == parent_hash);
  const int64_t E = mod.config().num_experts, S = mod.config().num_shared_experts;
  int routed_changed = 0;
  for (const CanonicalTensor& t : mod.tensors()) {
    bool routed = t.role == Role::Expert && t.expert < E - S;
    bool same = tensor_bytes(mod, t.name) == tensor_bytes(ft, t.name);
    if (!routed) {
      INFO(t.name);
      CHECK(same);
    }
    routed_changed += routed && !same;
  }
  CHECK(routed_changed > 0);
  // Lineage: finetune -> the module (its hash) -> extract -> the parent.
  auto prov = Provenance::load(out);
  REQUIRE(prov);
  CHECK(prov->output_hash == content_hash(ft));
  std::string module_hash = content_hash(mod);
  REQUIRE(prov->parents.count(module_hash) == 1);
  CHECK(prov->parents.at(module_hash)["command"].as<std::string>() == "extract");
  // And merge takes it back: module expert i of a layer is the parent's sel.kept[layer][i].
  RunResult merged = run_emo("merge --base " + q(tiny()) + " --module " + q(out) + " --out " + q(dir / "merged"));
  INFO(merged.err);
  REQUIRE(merged.code == 0);
  Checkpoint m = Checkpoint::open(dir / "merged");
  int moved = 0;
  for (int l = 0; l < 4; ++l)
    for (size_t i = 0; i < sel.kept[l].size(); ++i) {
      std::string in_module = "model.layers." + std::to_string(l) + ".mlp.experts." + std::to_string(i) + ".down_proj.weight";
      std::string in_full = "model.layers." + std::to_string(l) + ".mlp.experts." + std::to_string(sel.kept[l][i]) +
                            ".down_proj.weight";
      CHECK(tensor_bytes(m, in_full) == tensor_bytes(ft, in_module));
      moved += tensor_bytes(m, in_full) != tensor_bytes(parent, in_full);
    }
  CHECK(moved > 0);
}

// Which experts of `before` moved in `after`: layer -> expert ids (any projection).
std::map<int, std::set<int>> moved_experts(const Checkpoint& before, const Checkpoint& after) {
  std::map<int, std::set<int>> moved;
  for (const CanonicalTensor& t : before.tensors())
    if (t.role == Role::Expert && tensor_bytes(before, t.name) != tensor_bytes(after, t.name)) moved[t.layer].insert(t.expert);
  return moved;
}

TEST_CASE("ESFT (--train-experts) trains only the named routed experts inside the full model", "[finetune][cli][freeze]") {
  TempDir dir;
  write_prompt_completion(dir / "d.jsonl", reversal_items(64, 5));
  Checkpoint base = Checkpoint::open(tiny());
  const std::string common = "finetune --model " + q(tiny()) + " --data " + q(dir / "d.jsonl") +
                             " --lr 1e-2 --batch-size 16 --max-steps 2 --warmup-steps 0 --threads 1 -q";
  // An experts file: layer 0 keeps 1, 5, 6 (two runs of rows), layer 2 keeps 3; layers 1
  // and 3 are not listed, so all their routed experts train.
  write_lines(dir / "experts.json", {R"({"0": [6, 1, 5], "2": [3]})"});
  RunResult r = run_emo(common + " --train routed --train-experts " + q(dir / "experts.json") + " --out " + q(dir / "file"));
  INFO(r.err);
  REQUIRE(r.code == 0);
  Checkpoint ft = Checkpoint::open(dir / "file");
  auto moved = moved_experts(base, ft);
  for (int e : moved[0]) CHECK((e == 1 || e == 5 || e == 6));
  for (int e : moved[2]) CHECK(e == 3);
  CHECK(!moved[0].empty());
  CHECK(moved[1].size() > 3);  // an unlisted layer trains every routed expert a token picked
  const int64_t shared = base.config().num_experts - 1;
  for (auto& [layer, ids] : moved) CHECK(ids.count(int(shared)) == 0);
  for (const CanonicalTensor& t : base.tensors())
    if (t.role != Role::Expert) {
      INFO(t.name);
      CHECK(tensor_bytes(base, t.name) == tensor_bytes(ft, t.name));
    }
  auto prov = Provenance::load(dir / "file");
  CHECK(prov->settings["train_experts"].as<std::string>() == (dir / "experts.json").string());

  // A module cut from this model names its experts in the model's numbering.
  Checkpoint parent = Checkpoint::open(tiny());
  ExpertSelection sel;
  for (int l = 0; l < 4; ++l) sel.kept[l] = {2, 7, 8};
  fs::path module = dir / "module";
  {
    AtomicDir out(module, false);
    Provenance p("extract");
    std::string parent_hash = content_hash(parent);
    p.add_parent("model", tiny(), parent_hash);
    p.output_hash = write_extract(parent, plan_extract(parent, sel, parent_hash), out.path());
    p.write(out.path());
    out.commit();
  }
  RunResult m = run_emo(common + " --train routed --train-experts " + q(module) + " --out " + q(dir / "mod"));
  INFO(m.err);
  REQUIRE(m.code == 0);
  auto moved_m = moved_experts(base, Checkpoint::open(dir / "mod"));
  size_t n = 0;
  for (auto& [layer, ids] : moved_m)
    for (int e : ids) {
      CHECK((e == 2 || e == 7 || e == 8));
      ++n;
    }
  CHECK(n > 0);

  // No expert to train, or a module of another model: one line, no output.
  RunResult non_moe = run_emo(common + " --train non_moe --train-experts " + q(module) + " --out " + q(dir / "x1"));
  CHECK(non_moe.code != 0);
  CHECK(non_moe.err.find("--train-experts") != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "x1"));
  fs::path other = make_model(dir.path(), "other", "tiny", 7);
  RunResult foreign = run_emo("finetune --model " + q(other) + " --data " + q(dir / "d.jsonl") +
                              " --max-steps 1 --threads 1 -q --train routed --train-experts " + q(module) + " --out " + q(dir / "x2"));
  CHECK(foreign.code != 0);
  CHECK(foreign.err.find("was cut from") != std::string::npos);
  CHECK(count_lines(foreign.err) == 1);
  CHECK_FALSE(fs::exists(dir / "x2"));
}

TEST_CASE("finetune --split trains on the GSM8K items of one corpus split only, and says which", "[finetune][cli][gsm8k]") {
  TempDir dir;
  const std::string gsm = (data_dir() / "gsm8k" / "train.jsonl").string();
  const std::string base = "finetune --model " + q(tiny()) + " --data " + q(gsm) +
                           " --format gsm8k --shots 0 --batch-size 2 --max-steps 1 --threads 1 -q";
  // The shipped corpus: 5,916 GSM8K items in train, 743 in valid, of the file's 7,473 lines.
  for (auto [split, examples] : {std::pair<std::string, int>{"train", 5916}, {"valid", 743}}) {
    RunResult r = run_emo(base + " --split " + split + " --out " + q(dir / split));
    INFO(r.err);
    REQUIRE(r.code == 0);
    auto prov = Provenance::load(dir / split);
    CHECK(prov->extra["data"]["examples"].as<int>() == examples);
    CHECK(prov->extra["data"]["outside_split"].as<int>() == 7473 - examples);
    CHECK(prov->settings["split"].as<std::string>() == split);
    bool named = false;
    for (const auto& in : prov->inputs) named |= in.role == "split" && in.path.find(split + ".jsonl.gz") != std::string::npos;
    CHECK(named);
  }
  // Without --split the setting is absent (cache keys of earlier runs stay valid).
  RunResult all = run_emo(base + " --limit 3 --out " + q(dir / "all"));
  REQUIRE(all.code == 0);
  CHECK_FALSE(Provenance::load(dir / "all")->settings["split"]);

  // Another format, or a file whose lines are not the shipped items: one line, no output.
  RunResult text = run_emo("finetune --model " + q(tiny()) + " --data " + q(gsm) + " --format text --split train --out " +
                           q(dir / "text") + " -q");
  CHECK(text.code != 0);
  CHECK(text.err.find("--split") != std::string::npos);
  CHECK(count_lines(text.err) == 1);
  CHECK_FALSE(fs::exists(dir / "text"));
  write_lines(dir / "other.jsonl", {R"({"question": "What is 1 + 1?", "answer": "1 + 1 = 2\n#### 2"})"});
  RunResult other = run_emo("finetune --model " + q(tiny()) + " --data " + q(dir / "other.jsonl") +
                            " --format gsm8k --split train --out " + q(dir / "other") + " -q");
  CHECK(other.code != 0);
  CHECK(count_lines(other.err) == 1);
  CHECK_FALSE(fs::exists(dir / "other"));
}

TEST_CASE("finetune on several sources: GSM8K items and the corpus's math text in one run, weighted",
          "[finetune][cli][gsm8k]") {
  TempDir dir;
  const std::string gsm = (data_dir() / "gsm8k" / "train.jsonl").string();
  const std::string corpus = (data_dir() / "corpus" / "valid.jsonl.gz").string();
  const std::string base = "finetune --model " + q(tiny()) + " --data " + q(gsm) + " --data " + q(corpus) +
                           " --shots 0 --split valid --domain math --seq-len 64 --batch-size 4 --max-steps 2 --threads 1 -q";
  RunResult r = run_emo(base + " --format gsm8k --format text --data-weight 1,0.5 --out " + q(dir / "mix"));
  INFO(r.err);
  REQUIRE(r.code == 0);
  auto prov = Provenance::load(dir / "mix");
  const auto sources = prov->extra["data"]["sources"];
  REQUIRE(sources.size() == 2);
  CHECK(sources[0]["format"].as<std::string>() == "gsm8k");
  CHECK(sources[0]["examples"].as<int>() == 743);  // --split: the GSM8K source only
  CHECK(sources[0]["examples_per_epoch"].as<int>() == 743);
  CHECK(sources[1]["format"].as<std::string>() == "text");
  const int text_sequences = sources[1]["sequences"].as<int>();
  CHECK(sources[1]["examples_per_epoch"].as<int>() == (text_sequences + 1) / 2);
  CHECK(prov->settings["format"].size() == 2);
  CHECK(prov->settings["data"].size() == 2);
  CHECK(prov->settings["data_weight"][1].as<double>() == 0.5);
  CHECK(prov->settings["domain"].as<std::string>() == "math");
  CHECK(prov->settings["shots"].as<int>() == 0);
  int data_inputs = 0;
  for (const auto& in : prov->inputs) data_inputs += in.role == "data";
  CHECK(data_inputs == 2);

  // A format count that fits neither rule, a weight count that does not match, --split with
  // no GSM8K source: one line, no output.
  for (const std::string& flags : {std::string(" --format gsm8k --format text --format text"),
                                   std::string(" --format gsm8k --format text --data-weight 1"),
                                   std::string(" --format text")}) {
    RunResult bad = run_emo(base + flags + " --out " + q(dir / "bad"));
    INFO(flags << ": " << bad.err);
    CHECK(bad.code != 0);
    CHECK(count_lines(bad.err) == 1);
    CHECK_FALSE(fs::exists(dir / "bad"));
  }
}

TEST_CASE("bad input: malformed lines, empty data, long sequences, non-finite loss", "[finetune][cli][bad-input]") {
  TempDir dir;
  const std::string base = "finetune --model " + q(tiny()) + " --batch-size 4 --max-steps 2 --threads 1 -q";
  write_lines(dir / "bad.jsonl", {R"({"prompt": "a b", "completion": " c"})", R"({"prompt": "x", "completion": )",
                                  R"({"prompt": "d e", "completion": " f"})"});
  RunResult bad = run_emo(base + " --data " + q(dir / "bad.jsonl") + " --out " + q(dir / "o1"));
  CHECK(bad.code != 0);
  CHECK(bad.err.find("line 2") != std::string::npos);
  CHECK(count_lines(bad.err) == 1);
  CHECK_FALSE(fs::exists(dir / "o1" / "config.json"));
  RunResult skip = run_emo(base + " --data " + q(dir / "bad.jsonl") + " --out " + q(dir / "o2") + " --skip-bad");
  INFO(skip.err);
  REQUIRE(skip.code == 0);
  CHECK(Provenance::load(dir / "o2")->extra["data"]["skipped_bad"].as<int>() == 1);

  write_lines(dir / "empty.jsonl", {});
  RunResult empty = run_emo(base + " --data " + q(dir / "empty.jsonl") + " --out " + q(dir / "o3") + " --format prompt-completion");
  CHECK(empty.code != 0);
  CHECK(empty.err.find("empty dataset") != std::string::npos);

  write_lines(dir / "long.jsonl", {R"({"prompt": "one two three", "completion": " four five six seven eight nine"})",
                                   R"({"prompt": "a", "completion": " b"})"});
  RunResult longer = run_emo(base + " --data " + q(dir / "long.jsonl") + " --out " + q(dir / "o4") + " --max-length 6");
  INFO(longer.err);
  REQUIRE(longer.code == 0);
  CHECK(Provenance::load(dir / "o4")->extra["data"]["truncated"].as<int>() == 1);
  RunResult context = run_emo(base + " --data " + q(dir / "long.jsonl") + " --out " + q(dir / "o5") + " --max-length 5000");
  CHECK(context.code != 0);
  CHECK(context.err.find("longer than the model's context (1024)") != std::string::npos);

  // A learning rate that blows the weights up: the run stops at the first non-finite loss
  // (or gradient norm), names the step, and the last checkpoint before it is intact.
  write_prompt_completion(dir / "d.jsonl", reversal_items(64, 8));
  fs::path out = dir / "nan";
  RunResult nan = run_emo("finetune --model " + q(tiny()) + " --data " + q(dir / "d.jsonl") + " --out " + q(out) +
                          " --batch-size 8 --max-steps 40 --lr 1e30 --clip 0 --warmup-steps 0 --schedule constant "
                          "--save-every 1 --threads 1 -q");
  CHECK(nan.code != 0);
  INFO(nan.err);
  CHECK((nan.err.find("is nan") != std::string::npos || nan.err.find("is inf") != std::string::npos));
  CHECK(nan.err.find("last good checkpoint") != std::string::npos);
  auto last = latest_checkpoint(out);
  REQUIRE(last);
  Json st = load_json_file((*last / kTrainerStateFile).string());
  CHECK(nan.err.find("step " + std::to_string(st["step"].get<int64_t>() + 1)) != std::string::npos);
  Checkpoint good = Checkpoint::open(*last);  // loadable
  CHECK(std::isfinite(st["last_metrics"]["loss"].get<double>()));
  CHECK_FALSE(fs::exists(out / "config.json"));
}
