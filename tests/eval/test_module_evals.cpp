// A module two ways: the full model with routing restricted to its experts (--experts)
// and the module `emo extract` writes. Every evaluation must report the same numbers for
// both (tests/cli/test_surgery_commands.cpp checks logits and one perplexity; this is
// every eval command, per example). Also the bad input of `emo eval ppl`.
#include <catch2/catch.hpp>
#include <cmath>
#include <fstream>

#include "cli_util.h"
#include "core/checkpoint/experts.h"
#include "core/io/jsonl.h"
#include "eval/eval_fixtures.h"

using namespace emo;
using namespace emo::test;

namespace {

std::vector<Json> records(const fs::path& file) {
  std::vector<Json> out;
  JsonlReader reader(file.string());
  Json rec;
  while (reader.next(rec)) out.push_back(rec);
  return out;
}

// The module's router has only the kept rows: its softmax sums the same non-zero terms
// as the masked model's (whose other terms are exp(-inf) = 0) but in another order, and
// that order reaches every later float. So log-likelihoods agree to rounding, not bits:
// 1e-6 relative. Discrete results (tokens, predictions, counts) must be equal.
void check_close(double masked, double extracted) {
  CHECK(std::abs(masked - extracted) <= 1e-6 * std::max(std::abs(masked), std::abs(extracted)));
}

}  // namespace

TEST_CASE("masked full model == extracted module on ppl, gsm8k bits per byte, gsm8k --generate and mc",
          "[eval][module][cli]") {
  EvalModel& em = eval_model();
  TempDir tmp;
  ExpertSelection sel;
  sel.kept = {{0, {0, 2, 3}}, {1, {1, 4}}};
  const std::string experts = (tmp / "module.json").string(), module = (tmp / "module").string();
  sel.save(experts);
  json_of(run_emo("extract --model " + em.dir.string() + " --experts " + experts + " --out " + module + " --json"));
  const std::string masked = "--model " + em.dir.string() + " --experts " + experts, extracted = "--model " + module;
  // Six GSM8K items, a four-document corpus and the small MC file.
  std::ifstream train(data_dir() / "gsm8k/train.jsonl");
  std::string gsm_text, line;
  for (int i = 0; i < 6 && std::getline(train, line); ++i) gsm_text += line + "\n";
  const std::string gsm = (tmp / "gsm8k.jsonl").string(), corpus = (tmp / "corpus.jsonl").string();
  write_file_atomic(gsm, gsm_text);
  write_file_atomic(corpus,
                    "{\"domain\": \"code\", \"text\": \"def add(a, b):\\n    return a + b\\n\"}\n"
                    "{\"domain\": \"math\", \"text\": \"Question: 2 + 3?\\nAnswer: 5\"}\n"
                    "{\"domain\": \"math\", \"text\": \"Twelve eggs make a dozen; 36 eggs are 3 dozen.\"}\n"
                    "{\"domain\": \"scripture\", \"text\": \"In the beginning was the Word.\"}\n");
  const std::string mc = (source_dir() / "tests/eval/data/mc_small.jsonl").string(),
                    fewshot = (source_dir() / "tests/eval/data/mc_fewshot.jsonl").string();

  SECTION("ppl") {
    Json a = json_of(run_emo("eval ppl " + masked + " --data " + corpus + " --json"));
    Json b = json_of(run_emo("eval ppl " + extracted + " --data " + corpus + " --json"));
    REQUIRE(a["domains"].size() == 4);
    for (const auto& [domain, s] : a["domains"].items()) {
      INFO(domain);
      const Json& t = b["domains"][domain];
      for (const char* k : {"tokens", "bytes", "documents"}) CHECK(s[k] == t[k]);
      for (const char* k : {"loss", "perplexity", "bits_per_byte"}) check_close(s[k].get<double>(), t[k].get<double>());
    }
  }
  SECTION("gsm8k bits per byte, per item") {
    const std::string args = " --data " + gsm + " --shots 2 --batch 4 --json --out ";
    Json a = json_of(run_emo("eval gsm8k " + masked + args + (tmp / "a").string()));
    Json b = json_of(run_emo("eval gsm8k " + extracted + args + (tmp / "b").string()));
    check_close(a["bits_per_byte"].get<double>(), b["bits_per_byte"].get<double>());
    CHECK(a["target_tokens"] == b["target_tokens"]);
    CHECK(a["target_bytes"] == b["target_bytes"]);
    auto ra = records(tmp / "a/examples.jsonl"), rb = records(tmp / "b/examples.jsonl");
    REQUIRE(ra.size() == 6);
    REQUIRE(rb.size() == 6);
    for (size_t i = 0; i < ra.size(); ++i) {
      INFO("item " << i);
      CHECK(ra[i]["prompt_sha256"] == rb[i]["prompt_sha256"]);
      check_close(ra[i]["sum_logprob"].get<double>(), rb[i]["sum_logprob"].get<double>());
    }
  }
  SECTION("gsm8k --generate: the same tokens, outputs and accuracy") {
    const std::string args = " --data " + gsm + " --generate --shots 2 --max-new-tokens 24 --batch 3 --json --out ";
    Json a = json_of(run_emo("eval gsm8k " + masked + args + (tmp / "a").string()));
    Json b = json_of(run_emo("eval gsm8k " + extracted + args + (tmp / "b").string()));
    CHECK(a["accuracy"] == b["accuracy"]);
    CHECK(a["exact_match"] == b["exact_match"]);
    CHECK(a["new_tokens"] == b["new_tokens"]);
    CHECK(a["finish_reasons"] == b["finish_reasons"]);
    CHECK(read_text_file(tmp / "a/examples.jsonl") == read_text_file(tmp / "b/examples.jsonl"));
  }
  SECTION("mc: the same predictions and accuracies") {
    const std::string args = " --data " + mc + " --fewshot " + fewshot + " --shots 1 --uncond --json --out ";
    Json a = json_of(run_emo("eval mc " + masked + args + (tmp / "a").string()));
    Json b = json_of(run_emo("eval mc " + extracted + args + (tmp / "b").string()));
    for (const char* k : {"acc_raw", "acc_per_token", "acc_per_char", "acc_uncond"}) CHECK(a[k] == b[k]);
    auto ra = records(tmp / "a/examples.jsonl"), rb = records(tmp / "b/examples.jsonl");
    REQUIRE(ra.size() == rb.size());
    for (size_t i = 0; i < ra.size(); ++i) {
      INFO("question " << i);
      for (const char* k : {"predicted_raw", "predicted_per_token", "predicted_per_char", "predicted_uncond", "tokens"})
        CHECK(ra[i][k] == rb[i][k]);
      for (const char* k : {"sum_logprob", "sum_logprob_uncond"})
        for (size_t c = 0; c < ra[i][k].size(); ++c) check_close(ra[i][k][c].get<double>(), rb[i][k][c].get<double>());
    }
  }
}

TEST_CASE("emo eval ppl: bad input names the file and line", "[eval][ppl][cli][bad-input]") {
  EvalModel& em = eval_model();
  TempDir tmp;
  auto expect_failure = [&](const std::string& args, const std::string& fragment) {
    check_refused(args, run_emo("eval ppl --model " + em.dir.string() + " " + args), fragment);
  };
  write_file_atomic(tmp / "missing.jsonl", "{\"text\": \"fine\", \"domain\": \"a\"}\n{\"domain\": \"a\"}\n");
  expect_failure("--data " + (tmp / "missing.jsonl").string(), "missing.jsonl: line 2: no string field 'text'");
  write_file_atomic(tmp / "body.jsonl", "{\"text\": \"a document\"}\n");
  expect_failure("--data " + (tmp / "body.jsonl").string() + " --text-field body", "line 1: no string field 'body'");
  write_file_atomic(tmp / "empty.jsonl", "");
  expect_failure("--data " + (tmp / "empty.jsonl").string(), "empty.jsonl: no documents");
  expect_failure("--data " + (tmp / "body.jsonl").string() + " --domain b", "no documents of domain b");
  write_file_atomic(tmp / "notjson.jsonl", "{\"text\": \"a\"}\n{\"text\": \n");
  expect_failure("--data " + (tmp / "notjson.jsonl").string(), "line 2");
}
