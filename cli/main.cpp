// emo: the command-line entry point. Parses the subcommand, runs it, and turns any
// emo::Error into one line on stderr and a non-zero exit code.
#include <algorithm>
#include <cstdio>
#include <exception>

#include <c10/util/Exception.h>

#include "cli/common.h"
#include "core/util/error.h"
#include "core/util/log.h"
#include "core/util/progress.h"
#include "core/util/version.h"

int main(int argc, char** argv) {
  using namespace emo;
  CLI::App app{std::string("emo ") + emo_version() +
               ": modular mixture-of-experts language models.\n"
               "Extract a module (a subset of experts) from an EMO or OLMoE checkpoint, fine-tune it, merge it back,\n"
               "and record how every output was made.\n"};
  app.require_subcommand(1);
  app.fallthrough();  // global flags (--threads, -q) may also follow the subcommand
  app.get_formatter()->column_width(34);
  auto& g = cli::globals();
  for (int i = 0; i < argc; ++i) g.argv.emplace_back(argv[i]);
  app.add_option("--threads", g.threads, "CPU threads for compute (default: all cores)");
  app.add_flag("-q,--quiet", g.quiet, "No progress or informational messages (errors still print)");
  app.add_flag("-v,--verbose", g.verbose, "More messages");
  app.set_version_flag("--version", std::string(emo_version()));
  // A usage error is one line, like every other error (CLI11 adds "Run with --help").
  app.failure_message([](const CLI::App*, const CLI::Error& e) { return "emo: error: " + std::string(e.what()) + "\n"; });
  app.parse_complete_callback([&] {
    if (g.quiet) {
      set_log_level(LogLevel::Warn);
      Progress::set_enabled(false);
    }
    if (g.verbose) set_log_level(LogLevel::Debug);
  });

  auto& registry = cli::command_registry();
  std::sort(registry.begin(), registry.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (const auto& [order, add] : registry) add(app);

  try {
    app.parse(argc, argv);
  } catch (const cli::ExitStatus& s) {
    return s.code;
  } catch (const CLI::ParseError& e) {
    return app.exit(e);  // prints help, or the usage error; exit code 0 for --help, else non-zero
  } catch (const Error& e) {
    std::fprintf(stderr, "emo: error: %s\n", e.what());
    return 1;
  } catch (const c10::Error& e) {
    // LibTorch's messages carry a backtrace after the first line; users need the line.
    std::string msg = e.what_without_backtrace();
    std::fprintf(stderr, "emo: error: %s\n", msg.substr(0, msg.find('\n')).c_str());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "emo: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "emo: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
