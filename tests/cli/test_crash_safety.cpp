// kill -9 at random points of extract, merge, finetune (its checkpointing) and recipe runs,
// many times over. After every kill, nothing may look complete that is not: a directory
// with a config.json must open and hash to the output hash its provenance records. The
// next run must clean up after the killed one (no OUT.tmp-<pid> or OUT.old-<pid> left) or
// resume it, and end with the same bits as a run that was never killed.
//
// Kill times are uniform over the length of an uninterrupted run, drawn from a seed that
// every failure prints (EMO_CRASH_SEED=N repeats a sequence).
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <random>
#include <thread>

#include "core/checkpoint/content_hash.h"
#include "core/checkpoint/provenance.h"
#include "finetune/ft_util.h"

using namespace emo;
using namespace emo::test;

namespace {

using Clock = std::chrono::steady_clock;

std::vector<std::string> words(const std::string& args) {
  std::vector<std::string> out;
  std::istringstream in(args);
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

struct Outcome {
  bool killed = false;
  int code = -1;
};

// Runs `emo ARGS` (whitespace-separated, no quoting: test paths have no spaces) and sends
// SIGKILL after `delay` unless it has exited by then. Exec'd directly, without a shell,
// so the delay is measured from the emo process's start. Its stderr is appended to
// `log` when given (what a failed run said), else dropped.
Outcome run_and_kill(const std::string& args, std::chrono::microseconds delay, const fs::path& log = {}) {
  std::vector<std::string> argv = words(args);
  argv.insert(argv.begin(), emo_exe());
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    int devnull = ::open("/dev/null", O_WRONLY);
    int err = log.empty() ? devnull : ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(devnull, 1), dup2(err < 0 ? devnull : err, 2);
    execv(cargv[0], cargv.data());
    _exit(127);
  }
  const auto deadline = Clock::now() + delay;
  Outcome o;
  int status = 0;
  for (;;) {
    if (waitpid(pid, &status, WNOHANG) == pid) break;
    if (Clock::now() >= deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  o.killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
  o.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return o;
}

std::chrono::microseconds time_run(const std::string& args) {
  auto t0 = Clock::now();
  Outcome o = run_and_kill(args, std::chrono::minutes(10));
  if (o.code != 0) throw std::runtime_error("uninterrupted run failed: emo " + args);
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0);
}

// The rule: a directory that looks like a checkpoint (config.json) is one, whole.
void check_complete_if_it_looks_so(const fs::path& dir) {
  std::error_code ec;
  if (!fs::exists(dir / "config.json", ec)) return;
  INFO("looks complete: " << dir.string());
  auto prov = Provenance::load(dir);
  REQUIRE(prov);
  std::string hash;
  REQUIRE_NOTHROW(hash = content_hash(Checkpoint::open(dir)));
  REQUIRE(hash == prov->output_hash);
}

// A temporary of a (possibly killed) writer: OUT.tmp-<pid>, OUT.old-<pid>, .final.tmp-<pid>.
// Its name says it is not an output, whatever it holds.
bool is_temporary(const fs::path& p) {
  std::string name = p.filename().string();
  return name.find(".tmp-") != std::string::npos || name.find(".old-") != std::string::npos;
}

// Every checkpoint-like directory at or below `root`, outside temporaries.
void check_tree(const fs::path& root) {
  std::error_code ec;
  if (!fs::exists(root, ec)) return;
  check_complete_if_it_looks_so(root);
  for (auto it = fs::recursive_directory_iterator(root, ec); it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (is_temporary(it->path())) {
      it.disable_recursion_pending();
      continue;
    }
    if (it->is_directory(ec)) check_complete_if_it_looks_so(it->path());
  }
}

// Temporaries left anywhere below `dir`.
std::vector<std::string> debris(const fs::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); it != fs::recursive_directory_iterator(); it.increment(ec))
    if (is_temporary(it->path())) out.push_back(it->path().string());
  return out;
}

std::mt19937_64& rng() {
  static std::mt19937_64 r = [] {
    uint64_t seed = std::random_device{}();
    if (const char* env = std::getenv("EMO_CRASH_SEED")) seed = std::stoull(env);
    std::printf("crash-safety kill times: EMO_CRASH_SEED=%llu\n", static_cast<unsigned long long>(seed));
    return std::mt19937_64(seed);
  }();
  return r;
}

std::chrono::microseconds random_delay(std::chrono::microseconds upto) {
  return std::chrono::microseconds(std::uniform_int_distribution<int64_t>(0, upto.count())(rng()));
}

// A tiny model, an experts file keeping 8 routed experts per layer, and a reversal task.
struct Fixture {
  TempDir dir;
  fs::path model, experts, data;
  Fixture() {
    model = make_model(dir.path(), "base", "tiny", 0);
    experts = dir / "experts.json";
    write_lines(experts, {R"({"0": [0,1,2,3,4,5,6,7], "1": [3,5,7,9,11,13,15,17], "2": [0,2,4,6,8,10,12,14], "3": [1,2,3,5,8,13,21,30]})"});
    data = dir / "reversal.jsonl";
    write_prompt_completion(data, reversal_items(64, 3));
  }
};

const Fixture& fixture() {
  static Fixture f;
  return f;
}

// Kills a one-shot command (writes OUT whole) `kills` times at random points, checking
// the rule after each; then a run to the end must leave OUT equal to the reference and no
// debris. `overwrite` is the command's flag for replacing OUT.
void kill_one_shot(const std::string& args, const std::string& overwrite, int kills) {
  TempDir work;
  fs::path ref = work / "ref", out = work / "out";
  auto t = time_run(args + " --out " + ref.string());
  const std::string ref_hash = Provenance::load(ref)->output_hash;
  int killed = 0;
  for (int i = 0; i < kills; ++i) {
    auto delay = random_delay(t);
    INFO("kill " << i << " after " << delay.count() << " us (an uninterrupted run takes " << t.count() << " us)");
    Outcome o = run_and_kill(args + " --out " + out.string() + " " + overwrite, delay);
    killed += o.killed;
    if (!o.killed) REQUIRE(o.code == 0);
    check_complete_if_it_looks_so(out);
    if (fs::exists(out / "config.json")) CHECK(Provenance::load(out)->output_hash == ref_hash);
  }
  CHECK(killed > 0);
  REQUIRE(run_and_kill(args + " --out " + out.string() + " " + overwrite, std::chrono::minutes(10)).code == 0);
  check_complete_if_it_looks_so(out);
  CHECK(content_hash(Checkpoint::open(out)) == ref_hash);
  CHECK(debris(work.path()) == std::vector<std::string>{});
}

}  // namespace

TEST_CASE("kill -9 during extract, many times: OUT is absent or complete, and the next run cleans up", "[crash][surgery]") {
  const Fixture& f = fixture();
  kill_one_shot("extract --model " + f.model.string() + " --experts " + f.experts.string(), "--force", 16);
}

TEST_CASE("kill -9 during merge, many times: OUT is absent or complete, and the next run cleans up", "[crash][merge]") {
  const Fixture& f = fixture();
  fs::path module = f.dir / "module";
  if (!fs::exists(module))
    REQUIRE(run_and_kill("extract --model " + f.model.string() + " --experts " + f.experts.string() + " --out " + module.string(),
                         std::chrono::minutes(10)).code == 0);
  kill_one_shot("merge --base " + f.model.string() + " --module " + module.string(), "--overwrite", 16);
}

TEST_CASE("kill -9 during finetune, again and again: checkpoints are whole, --resume ends on the same bits",
          "[crash][finetune]") {
  const Fixture& f = fixture();
  TempDir work;
  const std::string args = "finetune --model " + f.model.string() + " --data " + f.data.string() +
                           " --max-steps 10 --save-every 2 --batch-size 8 --lr 3e-3 --threads 1 -q";
  fs::path ref = work / "ref", out = work / "out";
  auto t = time_run(args + " --out " + ref.string());
  int kills = 0;
  for (bool done = false; !done;) {
    // Up to 10 kills, then the run goes to the end. The first kill comes in the first half
    // of a run, so that it surely lands (a later run may finish before its kill: it resumed).
    auto delay = kills == 0 ? random_delay(t / 2)
                 : kills < 10 ? random_delay(t)
                              : std::chrono::microseconds(std::chrono::minutes(10));
    INFO("run " << kills << ", killed after " << delay.count() << " us (uninterrupted: " << t.count() << " us)");
    Outcome o = run_and_kill(args + " --out " + out.string() + " --resume", delay, work / "stderr.log");
    if (o.killed) {
      ++kills;
    } else if (kills == 0) {
      // The first run beat its kill (it was faster than the timed one): start over, with the
      // kill coming sooner.
      REQUIRE(o.code == 0);
      check_tree(out);
      fs::remove_all(out);
      t /= 2;
      continue;
    } else {
      INFO("what the runs wrote to stderr:\n" << file_bytes(work / "stderr.log"));
      REQUIRE(o.code == 0);
      done = true;
    }
    check_tree(out);
  }
  CHECK(kills > 0);
  CHECK(file_bytes(out / "model.safetensors") == file_bytes(ref / "model.safetensors"));
  CHECK(debris(work.path()) == std::vector<std::string>{});
}

TEST_CASE("kill -9 during a recipe run, many times: every step output is whole and the rerun finishes the same",
          "[crash][recipes]") {
  const Fixture& f = fixture();
  TempDir work;
  fs::path recipe = work / "crash.yaml";
  write_lines(recipe, {
      "name: crash",
      "inputs:",
      "  data: " + f.data.string(),
      "  experts: " + f.experts.string(),
      "steps:",
      "  - {id: base, command: init, with: {preset: tiny, seed: 0}}",
      "  - {id: module, command: extract, with: {model: '${steps.base.out}', experts: '${inputs.experts}'}}",
      "  - id: tuned",
      "    command: finetune",
      "    with: {model: '${steps.module.out}', data: '${inputs.data}', max-steps: 4, save-every: 2, batch-size: 8,",
      "           lr: 3e-3}",
      "  - {id: merged, command: merge, with: {base: '${steps.base.out}', module: '${steps.tuned.out}'}}",
  });
  fs::path ref = work / "ref", wd = work / "wd";
  auto t = time_run("run " + recipe.string() + " --workdir " + ref.string());
  const std::string ref_hash = Provenance::load(ref / "merged")->output_hash;
  int killed = 0;
  for (int i = 0; i < 10; ++i) {
    auto delay = random_delay(t);
    INFO("kill " << i << " after " << delay.count() << " us (uninterrupted: " << t.count() << " us)");
    Outcome o = run_and_kill("run " + recipe.string() + " --workdir " + wd.string(), delay);
    killed += o.killed;
    if (!o.killed) REQUIRE(o.code == 0);
    check_tree(wd);
    if (!o.killed && killed == 0) {
      // The run beat its kill (it was faster than the timed one), and every later run would
      // find its steps cached and end before any kill: start over, with kills coming sooner.
      fs::remove_all(wd);
      t /= 2;
    }
  }
  CHECK(killed > 0);
  REQUIRE(run_and_kill("run " + recipe.string() + " --workdir " + wd.string(), std::chrono::minutes(10)).code == 0);
  check_tree(wd);
  CHECK(Provenance::load(wd / "merged")->output_hash == ref_hash);
  CHECK(debris(wd) == std::vector<std::string>{});
  // And the next run finds every step cached.
  RunResult again = run_emo("run " + recipe.string() + " --workdir " + wd.string() + " --json");
  REQUIRE(again.code == 0);
  Json report = Json::parse(again.out);
  for (const auto& s : report["steps"]) CHECK(s["state"] == "cached");
}
