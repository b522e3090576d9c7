// Helpers shared by the test suites: where the sources and the shared data live, and a
// temporary directory that removes itself.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>

#include "core/util/source_dir.h"

namespace emo::test {

inline std::filesystem::path source_dir() { return ::emo::build_source_dir(); }

// ../shared next to the checkout, or $EMO_SHARED when set.
inline std::filesystem::path shared_dir() {
  if (const char* env = std::getenv("EMO_SHARED")) return env;
  return source_dir().parent_path() / "shared";
}

// The project's own copy of the small data (tokenizers, corpus, GSM8K train).
inline std::filesystem::path data_dir() { return source_dir() / "data"; }

// The test references' virtual environment (scripts/reference-venv: torch, transformers,
// tokenizers from PyPI, pinned): $EMO_REFERENCE_VENV, or the one CMake named at configure
// time. reference_tool("python") is its interpreter, reference_tool("torchrun") its launcher.
inline std::filesystem::path reference_venv() {
  if (const char* env = std::getenv("EMO_REFERENCE_VENV")) return env;
  return EMO_REFERENCE_VENV;
}
inline std::filesystem::path reference_tool(const std::string& name) {
  return reference_venv() / "bin" / name;
}
inline bool have_reference_venv() {
  return std::filesystem::exists(reference_venv() / ".emo-complete");
}
// What a test says when the environment is missing (it fails: a reference that is not
// there is not a pass).
inline std::string reference_install_hint() {
  return "the Python test references are not installed at " + reference_venv().string() +
         ": run scripts/install-deps --test (or scripts/reference-venv)";
}

// The shell words that run tests/reference/<script> (or a tool of the environment, e.g.
// "torchrun") with the references' environment; throws, which fails the test, when the
// environment is missing.
inline std::string reference_command(const std::string& tool, const std::string& script = "") {
  if (!have_reference_venv()) throw std::runtime_error(reference_install_hint());
  std::string words = "'" + reference_tool(tool).string() + "'";
  if (!script.empty()) words += " '" + (source_dir() / "tests" / "reference" / script).string() + "'";
  return words;
}
inline std::string reference_script(const std::string& script) {
  return reference_command("python", script);
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "emo-test-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

}  // namespace emo::test
