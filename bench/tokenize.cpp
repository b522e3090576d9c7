// Tokenization speed on the shared corpus: the tokenizer as the library runs it (word cache
// and heap-ordered merges) against a baseline of the same tokenizer with the cache off and
// the textbook merge loop (rescan every pair after each merge), on the same text, for
// dolma2 and dolma2-8k. Both must give the same ids; the figures are MB of UTF-8 text
// per second on one thread, best of three passes, each pass with a freshly loaded
// tokenizer (so the candidate's cache starts empty every time).
//
//   bench_tokenize [CORPUS.jsonl.gz]      default: ../shared/data/corpus/train.jsonl.gz
#include <zlib.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/text/tokenizer.h"
#include "core/util/source_dir.h"

namespace fs = std::filesystem;

namespace {

fs::path shared_dir() {
  if (const char* env = std::getenv("EMO_SHARED")) return env;
  return fs::path(::emo::build_source_dir()).parent_path() / "shared";
}

// The "text" of every line of a gzipped JSONL file.
std::vector<std::string> read_texts(const fs::path& path) {
  gzFile file = gzopen(path.string().c_str(), "rb");
  if (!file) throw std::runtime_error("cannot open " + path.string());
  std::vector<std::string> texts;
  std::string line;
  char buffer[1 << 16];
  while (gzgets(file, buffer, sizeof buffer)) {
    line += buffer;
    if (line.back() != '\n') continue;
    texts.push_back(nlohmann::json::parse(line).at("text").get<std::string>());
    line.clear();
  }
  gzclose(file);
  if (!line.empty()) texts.push_back(nlohmann::json::parse(line).at("text").get<std::string>());
  return texts;
}

struct Pass {
  double seconds = 0;
  size_t ids = 0;
  uint64_t checksum = 0;  // order-sensitive, so that both runs are seen to agree
};

Pass encode_all(const std::string& tokenizer_path, const emo::TokenizerOptions& options,
                const std::vector<std::string>& texts) {
  const emo::Tokenizer tokenizer = emo::Tokenizer::load(tokenizer_path, options);
  Pass pass;
  std::vector<int32_t> ids;
  const auto start = std::chrono::steady_clock::now();
  for (const std::string& text : texts) {
    ids.clear();
    tokenizer.encode_append(text, ids);
    pass.ids += ids.size();
    for (int32_t id : ids) pass.checksum = pass.checksum * 1000003u + static_cast<uint32_t>(id);
  }
  pass.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return pass;
}

Pass best_of_three(const std::string& tokenizer_path, const emo::TokenizerOptions& options,
                   const std::vector<std::string>& texts) {
  Pass best = encode_all(tokenizer_path, options, texts);
  for (int i = 0; i < 2; ++i) {
    const Pass pass = encode_all(tokenizer_path, options, texts);
    if (pass.seconds < best.seconds) best = pass;
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const fs::path corpus =
        argc > 1 ? fs::path(argv[1]) : shared_dir() / "data" / "corpus" / "train.jsonl.gz";
    const std::vector<std::string> texts = read_texts(corpus);
    size_t bytes = 0;
    for (const std::string& text : texts) bytes += text.size();
    const double megabytes = bytes / 1e6;
    std::printf("bench_tokenize: %s, %zu documents, %.2f MB of text, one thread\n",
                corpus.string().c_str(), texts.size(), megabytes);
    std::printf("%-10s %14s %14s %8s %10s\n", "tokenizer", "candidate MB/s", "baseline MB/s",
                "ratio", "ids");

    const emo::TokenizerOptions candidate;  // the defaults: cache on, heap-ordered merges
    emo::TokenizerOptions baseline;
    baseline.cache_entries = 0;
    baseline.naive_merges = true;
    bool agree = true;
    for (const char* name : {"dolma2", "dolma2-8k"}) {
      const std::string path = (shared_dir() / "data" / "tokenizers" / name).string();
      const Pass fast = best_of_three(path, candidate, texts);
      const Pass slow = best_of_three(path, baseline, texts);
      std::printf("%-10s %14.1f %14.1f %7.2fx %10zu\n", name, megabytes / fast.seconds,
                  megabytes / slow.seconds, slow.seconds / fast.seconds, fast.ids);
      if (fast.ids != slow.ids || fast.checksum != slow.checksum) {
        std::printf("%-10s MISMATCH: candidate and baseline gave different ids\n", name);
        agree = false;
      }
    }
    return agree ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_tokenize: %s\n", e.what());
    return 1;
  }
}
