// End to end: a tiny model that cannot add learns a synthetic GSM8K-format arithmetic set
// through `emo finetune`, and `emo eval gsm8k --generate` reports the accuracy that greedy
// decoding here, item by item, finds: low before, at least 90% after, on the training
// items (the point is the evaluation path, not generalisation: 24 sums are memorised in
// about 150 steps; 240 leave a margin). About 25 s of one core.
#include <catch2/catch.hpp>
#include <random>
#include <set>

#include "cli_util.h"
#include "core/io/jsonl.h"
#include "core/model/generate.h"
#include "core/model/runtime.h"
#include "core/text/gsm8k.h"
#include "eval/gsm8k_eval.h"

using namespace emo;
using namespace emo::test;

namespace {

constexpr int kMaxNewTokens = 32;

// Distinct two-digit additions as GSM8K rows: {"question": "What is 23 plus 45?",
// "answer": "23 + 45 = 68\n#### 68"} (the target the finetuning trains on and the
// evaluation reads is " 23 + 45 = 68. So the answer is 68.").
std::vector<GsmItem> addition_items(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::set<std::pair<int, int>> seen;
  std::vector<GsmItem> items;
  while (items.size() < n) {
    int a = 10 + int(rng() % 90), b = 10 + int(rng() % 90);
    if (!seen.insert({a, b}).second) continue;
    std::string sum = std::to_string(a + b);
    items.push_back({"What is " + std::to_string(a) + " plus " + std::to_string(b) + "?",
                     std::to_string(a) + " + " + std::to_string(b) + " = " + sum + "\n#### " + sum});
  }
  return items;
}

void write_gsm8k(const fs::path& file, const std::vector<GsmItem>& items) {
  std::string text;
  for (const auto& it : items) text += Json({{"question", it.question}, {"answer", it.answer}}).dump() + "\n";
  write_file_atomic(file, text);
}

Json eval_generate(const fs::path& model, const fs::path& data, const fs::path& out) {
  RunResult r = run_emo("eval gsm8k --model " + model.string() + " --data " + data.string() +
                        " --generate --shots 0 --max-new-tokens " + std::to_string(kMaxNewTokens) +
                        " --batch 16 --threads 1 --json --out " + out.string());
  INFO(r.err);
  REQUIRE(r.code == 0);
  return Json::parse(r.out);
}

// Greedy decoding of each 0-shot prompt alone with core generate(), graded by the GSM8K
// reader: what `emo eval gsm8k --generate` must report.
std::vector<bool> greedy_correct(const fs::path& model_dir, const std::vector<GsmItem>& items) {
  configure_threads(1);
  Checkpoint ck = Checkpoint::open(model_dir);
  Model model = Model::load(ck);
  Tokenizer tok = Tokenizer::load((model_dir / "tokenizer.json").string());
  GenerateOptions go;
  go.max_new_tokens = kMaxNewTokens;
  go.stop_ids = model.config().eos_token_ids;
  std::vector<bool> correct;
  for (const auto& it : items) {
    std::vector<int32_t> ids = tok.encode(gsm8k_context(it.question, 0));
    Generation g = generate(model, {std::vector<int64_t>(ids.begin(), ids.end())}, go);
    std::string text = tok.decode(std::vector<int32_t>(g.tokens[0].begin(), g.tokens[0].end()), true);
    Gsm8kGenerated graded;
    gsm8k_grade(graded, text, it.answer);
    correct.push_back(graded.correct);
  }
  return correct;
}

}  // namespace

TEST_CASE("finetuned on synthetic additions, emo eval gsm8k --generate reports the training accuracy greedy finds",
          "[eval][gsm8k][finetune][cli][acceptance]") {
  TempDir dir;
  const auto items = addition_items(24, 7);
  const fs::path data = dir / "add.jsonl", base = dir / "tiny", tuned = dir / "tuned";
  write_gsm8k(data, items);
  RunResult init = run_emo("init --preset tiny --seed 0 --out " + base.string());
  REQUIRE(init.code == 0);

  Json before = eval_generate(base, data, dir / "before");
  CHECK(before["accuracy"]["total"] == items.size());
  CHECK(before["accuracy"]["value"].get<double>() < 0.1);

  RunResult ft =
      run_emo("finetune --model " + base.string() + " --data " + data.string() + " --format gsm8k --shots 0" +
              " --out " + tuned.string() +
              " --lr 3e-3 --batch-size 8 --max-steps 240 --schedule constant --warmup-steps 10 --threads 1 -q");
  INFO(ft.err);
  REQUIRE(ft.code == 0);

  Json after = eval_generate(tuned, data, dir / "after");
  INFO("accuracy before " << before["accuracy"]["value"] << ", after " << after["accuracy"]["value"]);
  CHECK(after["accuracy"]["value"].get<double>() >= 0.9);
  // The command's per-item verdicts are greedy decoding's, item by item.
  std::vector<bool> want = greedy_correct(tuned, items);
  std::vector<Json> recs;
  JsonlReader reader((dir / "after/examples.jsonl").string());
  for (Json rec; reader.next(rec);) recs.push_back(rec);
  REQUIRE(recs.size() == items.size());
  size_t correct = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    INFO(items[i].question << " -> " << recs[i]["output"]);
    CHECK(recs[i]["correct"].get<bool>() == want[i]);
    correct += want[i];
  }
  CHECK(after["accuracy"]["correct"] == correct);
}
