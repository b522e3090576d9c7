// What every fuzz target shares: the input written to a file (for loaders that take a
// path), and the rule that bad input may only ever raise emo::Error - the one-line
// "file: field: what" message - never crash, never another exception.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <string>

#include "core/util/error.h"

namespace emo::fuzz {

// A per-process scratch directory in memory (/dev/shm when there is one).
inline std::string scratch_dir() {
  static std::string dir = [] {
    std::string base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    std::string d = base + "/emo-fuzz-" + std::to_string(getpid());
    std::string cmd = "mkdir -p " + d;
    if (std::system(cmd.c_str()) != 0) std::abort();
    return d;
  }();
  return dir;
}

inline std::string write_input(const std::string& name, const uint8_t* data, size_t size) {
  std::string path = scratch_dir() + "/" + name;
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(data), std::streamsize(size));
  return path;
}

// Runs fn; emo::Error is the expected answer to bad input, anything else is a finding.
template <typename Fn>
void expect_clean(Fn&& fn) {
  try {
    fn();
  } catch (const Error&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "finding: an exception other than emo::Error escaped: %s\n", e.what());
    std::abort();
  }
}

}  // namespace emo::fuzz
