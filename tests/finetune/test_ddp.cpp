// Data parallelism: two processes with Gloo on localhost (launched by torchrun from the
// references' environment, whose agent hosts the store) follow the same loss curve as one process with the same
// global batch; so do ZeRO-1 and gradient accumulation.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <fstream>
#include <random>
#include <thread>

#include "core/checkpoint/checkpoint.h"
#include "core/io/sha256.h"
#include "finetune/dist.h"
#include "ft_util.h"

using namespace emo;
using namespace emo::test;

namespace {

std::vector<double> losses(const fs::path& out) {
  std::vector<double> v;
  for (const auto& j : read_jsonl(out / "metrics.jsonl")) v.push_back(j["loss"].get<double>());
  return v;
}

void check_same_curve(const std::vector<double>& a, const std::vector<double>& b, double tol) {
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    INFO("step " << i + 1 << ": " << a[i] << " vs " << b[i]);
    CHECK(std::abs(a[i] - b[i]) <= tol);
  }
}

using Clock = std::chrono::steady_clock;

// A shell command started in its own process group (so that it and its children can be
// killed together), with the time it started.
struct Launched {
  pid_t pid = -1;
  Clock::time_point start = Clock::now();
};

Launched launch(const std::string& command) {
  Launched l;
  l.pid = fork();
  if (l.pid == 0) {
    setpgid(0, 0);
    execl("/bin/sh", "sh", "-c", ("exec " + command).c_str(), (char*)nullptr);
    _exit(127);
  }
  return l;
}

// Waits for `l` up to `limit`; -1 if it was still running (then it is killed).
int wait_for(const Launched& l, std::chrono::seconds limit) {
  int status = 0;
  while (Clock::now() - l.start < limit) {
    if (waitpid(l.pid, &status, WNOHANG) == l.pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(-l.pid, SIGKILL);
  waitpid(l.pid, &status, 0);
  return -1;
}

// Blocks until rank 0 has logged `steps` steps in out/metrics.jsonl (or a minute passed;
// then the test fails showing `log`).
void wait_for_steps(const fs::path& out, int steps, const fs::path& log) {
  const auto deadline = Clock::now() + std::chrono::minutes(1);
  while (Clock::now() < deadline) {
    std::error_code ec;
    if (fs::exists(out / "metrics.jsonl", ec) && count_lines(read_text_file(out / "metrics.jsonl")) >= steps) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  FAIL("rank 0 did not reach step " << steps << "; " << log.string() << ":\n" << read_text_file(log));
}

// The pid of the emo process that is rank `rank` of the run writing to `out` (read from
// /proc: its command line names `out`, its environment RANK).
pid_t find_rank(const fs::path& out, int rank) {
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream cmd(entry.path() / "cmdline", std::ios::binary), env(entry.path() / "environ", std::ios::binary);
    std::string c((std::istreambuf_iterator<char>(cmd)), {}), e((std::istreambuf_iterator<char>(env)), {});
    if (c.find("finetune") == std::string::npos || c.find(out.string()) == std::string::npos) continue;
    const std::string want = std::string(1, '\0') + "RANK=" + std::to_string(rank) + '\0';
    if ((std::string(1, '\0') + e).find(want) == std::string::npos) continue;
    return pid_t(std::stoi(name));
  }
  return -1;
}

}  // namespace

TEST_CASE("two Gloo processes under torchrun give the one-process loss curve (within 1e-5)", "[finetune][ddp]") {
  TempDir dir;
  const std::string args = reversal_finetune(dir.path(), 2, 96, 21) +
                           " --lr 3e-3 --batch-size 12 --max-steps 8 --warmup-steps 2 --z-loss-weight 0.001 --threads 1 -q";
  RunResult one = run_emo(args + " --out " + q(dir / "one"));
  INFO(one.err);
  REQUIRE(one.code == 0);

  auto torchrun = [&](const std::string& extra, const fs::path& out) {
    std::string cmd = torchrun_command(2) + " " + args + " " + extra + " --out " + q(out) + " > " +
                      q(dir / "torchrun.log") + " 2>&1";
    int rc = std::system(cmd.c_str());
    INFO(read_text_file(dir / "torchrun.log"));
    REQUIRE(rc == 0);
  };
  torchrun("", dir / "two");
  check_same_curve(losses(dir / "one"), losses(dir / "two"), 1e-5);
  auto prov = read_text_file(dir / "two" / "provenance.yaml");
  CHECK(prov.find("world_size: 2") != std::string::npos);
  CHECK(prov.find("launcher: torchrun") != std::string::npos);

  // ZeRO-1: the optimizer state sharded over the two processes, the same curve.
  torchrun("--zero1", dir / "zero");
  check_same_curve(losses(dir / "one"), losses(dir / "zero"), 1e-5);
  // Its checkpoint holds the whole optimizer state: one process can resume from it.
  Checkpoint a = Checkpoint::open(dir / "zero"), b = Checkpoint::open(dir / "two");
  double worst = 0;
  for (const auto& t : a.tensors()) {
    auto x = a.view(t), y = b.view(t);
    const float* p = reinterpret_cast<const float*>(x.data);
    const float* r = reinterpret_cast<const float*>(y.data);
    for (size_t i = 0; i < x.nbytes / 4; ++i) worst = std::max(worst, double(std::abs(p[i] - r[i])));
  }
  CHECK(worst < 1e-4);
}

// torchrun's default has rank 0 join the agent's store; PyTorch's opt-out has rank 0 host its
// own. A 2.x emo works both ways. A 1.13 emo cannot speak a 2.x agent's store protocol: it
// must stop with one line saying how to launch it, not hang.
TEST_CASE("torchrun's other store mode works, or a 1.13 build says how to launch it", "[finetune][ddp]") {
  TempDir dir;
  fs::path model = make_model(dir.path(), "tiny", "tiny", 2);
  write_prompt_completion(dir / "d.jsonl", reversal_items(24, 21));
  const std::string cmd = torchrun_command(2, /*agent_store=*/TORCH_VERSION_MAJOR < 2) + " finetune --model " +
                          q(model) + " --data " + q(dir / "d.jsonl") + " --batch-size 4 --max-steps 2 --threads 1" +
                          " --dist-timeout 30 -q --out " + q(dir / "out") + " > " + q(dir / "torchrun.log") + " 2>&1";
  const auto start = std::chrono::steady_clock::now();
  const int rc = std::system(cmd.c_str());
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const std::string log = read_text_file(dir / "torchrun.log");
  INFO(log);
  if (TORCH_VERSION_MAJOR >= 2) {
    CHECK(rc == 0);
    CHECK(fs::exists(dir / "out" / "model.safetensors"));
  } else {
    CHECK(rc != 0);
    CHECK(log.find("TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 torchrun --rdzv-backend c10d") != std::string::npos);
    CHECK(seconds < 60);
    CHECK_FALSE(fs::exists(dir / "out" / "model.safetensors"));
  }
}

TEST_CASE("gradient accumulation gives the one-batch loss curve, global load balancing included", "[finetune][ddp]") {
  TempDir dir;
  const std::string args = reversal_finetune(dir.path(), 3, 96, 22) +
                           " --lr 3e-3 --batch-size 12 --max-steps 6 --warmup-steps 1 --lb-weight 0.05 --threads 1 -q";
  RunResult one = run_emo(args + " --out " + q(dir / "one"));
  RunResult acc = run_emo(args + " --out " + q(dir / "acc") + " --micro-batch-size 5");
  RunResult ckpt = run_emo(args + " --out " + q(dir / "ckpt") + " --checkpoint-activations");
  INFO(one.err << acc.err << ckpt.err);
  REQUIRE(one.code == 0);
  REQUIRE(acc.code == 0);
  REQUIRE(ckpt.code == 0);
  check_same_curve(losses(dir / "one"), losses(dir / "acc"), 1e-5);
  check_same_curve(losses(dir / "one"), losses(dir / "ckpt"), 1e-6);
  // EMO's per-micro-batch form is a different loss: it must not coincide.
  RunResult micro = run_emo(args + " --out " + q(dir / "micro") + " --micro-batch-size 5 --lb-scope micro");
  REQUIRE(micro.code == 0);
  auto m = read_jsonl(dir / "micro" / "metrics.jsonl"), g = read_jsonl(dir / "acc" / "metrics.jsonl");
  CHECK(m[0]["lb_loss"].get<double>() != Approx(g[0]["lb_loss"].get<double>()).epsilon(1e-6));
}

// A dead peer's socket: with a process group up, writing to it is an EPIPE error the
// collective reports, not a SIGPIPE that kills the process with nothing said (run in a child,
// so a failure is the child's death, not the test runner's).
TEST_CASE("a process group makes a write to a dead peer's socket an error, not a silent SIGPIPE", "[finetune][ddp][crash]") {
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    DistEnv e;
    e.rank = 0, e.world = 1;
    e.master_addr = "127.0.0.1";
    e.master_port = free_port();
    auto comm = Comm::create(e, "gloo", torch::kCPU, std::chrono::seconds(30));
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) _exit(3);
    close(fds[1]);  // the peer is gone
    const char byte = 1;
    const ssize_t n = write(fds[0], &byte, 1);
    _exit(n == -1 && errno == EPIPE ? 0 : 4);
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  INFO("signalled: " << WIFSIGNALED(status) << ", signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0));
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

// A rank killed with SIGKILL mid-run: the survivor stops within seconds (not the collective
// timeout) with one line naming the dead rank, writes nothing that looks finished, and the
// run relaunched with --resume ends on the same bits as an uninterrupted one. Once launched
// as srun or a job script would (each process given RANK, WORLD_SIZE, MASTER_ADDR/PORT:
// rank 0 hosts the store), once under torchrun (its agent stops the survivor and names the
// failed rank).
TEST_CASE("kill -9 of one rank: the other stops naming it, --resume gives the uninterrupted bits", "[finetune][ddp][crash]") {
  TempDir dir;
  const std::string args = reversal_finetune(dir.path(), 2, 96, 23) +
                           " --lr 3e-3 --batch-size 8 --max-steps 10 --save-every 2 --threads 1 --dist-timeout 120 -q";
  // The same two-process job started by hand: RANK etc. per process, rank 0 hosts the store.
  auto by_hand = [&](const fs::path& out, const std::string& extra) {
    const std::string port = std::to_string(free_port());
    std::vector<Launched> ranks;
    for (int r = 0; r < 2; ++r) {
      ranks.push_back(launch("env RANK=" + std::to_string(r) + " LOCAL_RANK=" + std::to_string(r) +
                             " WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + port + " " + emo_exe() + " " + args +
                             " " + extra + " --out " + q(out) + " 2> " + q(out.string() + ".rank" + std::to_string(r))));
    }
    return ranks;
  };
  auto whole = by_hand(dir / "whole", "");
  REQUIRE(wait_for(whole[0], std::chrono::minutes(3)) == 0);
  REQUIRE(wait_for(whole[1], std::chrono::minutes(1)) == 0);
  const std::string want = hash_file((dir / "whole" / "model.safetensors").string());

  SECTION("launched by hand (srun, job scripts)") {
    const fs::path out = dir / "killed";
    auto ranks = by_hand(out, "");
    wait_for_steps(out, 5, out.string() + ".rank0");
    kill(ranks[1].pid, SIGKILL);
    const auto killed_at = Clock::now();
    const int code = wait_for(ranks[0], std::chrono::seconds(90));
    const double took = std::chrono::duration<double>(Clock::now() - killed_at).count();
    wait_for(ranks[1], std::chrono::seconds(1));
    const std::string err = read_text_file(out.string() + ".rank0");
    INFO(err);
    CHECK(code == 1);
    CHECK(took < 30);  // the census (5 s), far below the 120 s collective timeout
    CHECK(count_lines(err) == 1);
    CHECK(err.find("rank 1 did not answer") != std::string::npos);
    CHECK(err.find("relaunch with --resume") != std::string::npos);
    CHECK_FALSE(fs::exists(out / "model.safetensors"));
    auto resumed = by_hand(out, "--resume");
    CHECK(wait_for(resumed[0], std::chrono::minutes(3)) == 0);
    CHECK(wait_for(resumed[1], std::chrono::minutes(1)) == 0);
    INFO(read_text_file(out.string() + ".rank0"));
    CHECK(hash_file((out / "model.safetensors").string()) == want);
  }
  SECTION("under torchrun") {
    const fs::path out = dir / "killed";
    Launched run = launch(torchrun_command(2) + " " + args + " --out " + q(out) + " > " + q(dir / "torchrun.log") + " 2>&1");
    wait_for_steps(out, 5, dir / "torchrun.log");
    const pid_t victim = find_rank(out, 1);
    REQUIRE(victim > 0);
    kill(victim, SIGKILL);
    const auto killed_at = Clock::now();
    const int code = wait_for(run, std::chrono::seconds(90));
    const double took = std::chrono::duration<double>(Clock::now() - killed_at).count();
    const std::string log = read_text_file(dir / "torchrun.log");
    INFO(log);
    CHECK(code != 0);
    CHECK(code != -1);
    CHECK(took < 30);
    CHECK(log.find("rank      : 1 (local_rank: 1)") != std::string::npos);
    CHECK(log.find("Signal 9 (SIGKILL)") != std::string::npos);
    CHECK_FALSE(fs::exists(out / "model.safetensors"));
    Launched resumed = launch(torchrun_command(2) + " " + args + " --resume --out " + q(out) + " > " +
                              q(dir / "resumed.log") + " 2>&1");
    CHECK(wait_for(resumed, std::chrono::minutes(3)) == 0);
    INFO(read_text_file(dir / "resumed.log"));
    CHECK(hash_file((out / "model.safetensors").string()) == want);
  }
}
