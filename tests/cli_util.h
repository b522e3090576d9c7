// Running the emo executable from tests: exit code, stdout and stderr of one command.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <torch/version.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/io/json.h"
#include "core/util/fs.h"
#include "test_util.h"

namespace emo::test {

struct RunResult {
  int code = -1;
  std::string out, err;
};

// The emo executable of this build: tests/CMakeLists.txt generates its definition (the
// path names the build directory, which no other test object's compile line does).
const char* emo_exe_path();
inline std::string emo_exe() { return emo_exe_path(); }

// A path as one shell word (the test directories hold no single quotes).
inline std::string q(const std::filesystem::path& p) { return "'" + p.string() + "'"; }

// Runs `emo <args>` through the shell (args are shell words; quote paths yourself).
inline RunResult run_emo(const std::string& args, const std::string& prefix = "") {
  TempDir tmp;
  std::string cmd = prefix + " " + emo_exe() + " " + args + " > " + (tmp / "out").string() + " 2> " +
                    (tmp / "err").string();
  int status = std::system(cmd.c_str());
  RunResult r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_text_file(tmp / "out");
  r.err = read_text_file(tmp / "err");
  return r;
}

// A TCP port on loopback that nothing listens on now (the kernel's pick for port 0).
inline int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("socket() failed");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = -1;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  close(fd);
  if (port <= 0) throw std::runtime_error("no free port on loopback");
  return port;
}

// The shell words that start `nproc` emo processes on this machine under torchrun (the
// references' environment: PyTorch 2.11); append emo's arguments. An emo built against
// LibTorch 2.x joins torchrun's agent store, torchrun's default. One built against 1.13
// cannot (2.x's store protocol, see finetune/dist.cpp), so there rank 0 hosts emo's own
// store: PyTorch's opt-out, TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 with the c10d rendezvous,
// as docs/finetune.md tells 1.13 users.
inline std::string torchrun_command(int nproc, bool agent_store = TORCH_VERSION_MAJOR >= 2) {
  const std::string port = std::to_string(free_port());
  std::string words = reference_command("torchrun") + " --nnodes 1 --nproc_per_node " + std::to_string(nproc);
  if (agent_store) return words + " --master_addr 127.0.0.1 --master_port " + port + " --no_python " + emo_exe();
  return "env TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 " + words + " --rdzv-backend c10d --rdzv-endpoint 127.0.0.1:" + port +
         " --no_python " + emo_exe();
}

inline int count_lines(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

// The command's stdout as JSON; the test stops, showing its stderr, unless it succeeded.
inline Json json_of(const RunResult& r) {
  INFO(r.err);
  REQUIRE(r.code == 0);
  return Json::parse(r.out);
}

// Relative difference; 0 when both are equal.
inline double rel(double a, double b) {
  return a == b ? 0 : std::abs(a - b) / std::max(std::abs(a), std::abs(b));
}

// Bad input, as the standards ask: a non-zero exit, one line saying `fragment`, and
// nothing written at `out` (when given).
inline void check_refused(const std::string& args, const RunResult& r, const std::string& fragment,
                          const fs::path& out = {}) {
  INFO(args << "\n" << r.err);
  CHECK(r.code != 0);
  CHECK(r.err.find(fragment) != std::string::npos);
  CHECK(count_lines(r.err) == 1);
  if (!out.empty()) CHECK_FALSE(fs::exists(out));
}

}  // namespace emo::test
