// Helpers of the finetune tests: small models, data files, metrics and tensor bytes.
#pragma once

#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "cli_util.h"
#include "core/checkpoint/checkpoint.h"
#include "core/io/json.h"
#include "core/util/error.h"

namespace emo::test {

// `emo init` into dir/name (extra: more flags, e.g. "--set num_experts=8").
inline fs::path make_model(const fs::path& dir, const std::string& name, const std::string& preset, int seed,
                           const std::string& extra = "") {
  fs::path p = dir / name;
  RunResult r = run_emo("init --preset " + preset + " --seed " + std::to_string(seed) + " --out " + p.string() + " " + extra);
  if (r.code != 0) throw std::runtime_error("emo init failed: " + r.err);
  return p;
}

inline void write_lines(const fs::path& file, const std::vector<std::string>& lines) {
  std::ofstream out(file);
  for (const auto& l : lines) out << l << "\n";
}

inline std::vector<Json> read_jsonl(const fs::path& file) {
  std::vector<Json> out;
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(Json::parse(line));
  return out;
}

// The reversal task: "reverse: c j b e k\nanswer:" -> " k e b j c" (5 distinct letters of 12).
struct ReversalItem {
  std::string prompt, completion;
};
inline std::vector<ReversalItem> reversal_items(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<char> letters;
  for (char c = 'a'; c <= 'l'; ++c) letters.push_back(c);
  std::vector<ReversalItem> items;
  std::vector<std::string> seen;
  while (items.size() < n) {
    std::vector<char> l = letters;
    for (size_t i = 0; i < 5; ++i) std::swap(l[i], l[i + rng() % (l.size() - i)]);
    std::string key(l.begin(), l.begin() + 5);
    if (std::find(seen.begin(), seen.end(), key) != seen.end()) continue;
    seen.push_back(key);
    std::string fwd, rev;
    for (int i = 0; i < 5; ++i) fwd += std::string(i ? " " : "") + key[size_t(i)];
    for (int i = 4; i >= 0; --i) rev += std::string(" ") + key[size_t(i)];
    items.push_back({"reverse: " + fwd + "\nanswer:", rev});
  }
  return items;
}

inline void write_prompt_completion(const fs::path& file, const std::vector<ReversalItem>& items) {
  std::ofstream out(file);
  for (const auto& it : items) out << Json({{"prompt", it.prompt}, {"completion", it.completion}}).dump() << "\n";
}

// A tiny model (init seed `model_seed`) and `items` reversal items (seed `data_seed`) written
// into dir: returns "finetune --model M --data D", for the caller's flags to follow.
inline std::string reversal_finetune(const fs::path& dir, int model_seed, size_t items, uint32_t data_seed) {
  fs::path model = make_model(dir, "tiny", "tiny", model_seed);
  write_prompt_completion(dir / "d.jsonl", reversal_items(items, data_seed));
  return "finetune --model " + q(model) + " --data " + q(dir / "d.jsonl");
}

// Bytes of a canonical tensor of a checkpoint.
inline std::string tensor_bytes(const Checkpoint& ck, const std::string& name) {
  TensorView v = ck.view(name);
  return std::string(reinterpret_cast<const char*>(v.data), size_t(v.nbytes));
}

inline std::string file_bytes(const fs::path& p) { return read_text_file(p); }

}  // namespace emo::test
