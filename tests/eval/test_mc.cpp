// Multiple choice in OLMES' RC format: the prompt strings, the metric rules on numbers
// worked by hand, the scores against one forward pass per choice on a small hand-made
// set (tests/eval/data/mc_small.jsonl: ARC-, MMLU- and HellaSwag-style rows), the
// command, and bad input.
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>

#include "cli_util.h"
#include "core/io/jsonl.h"
#include "eval/eval_fixtures.h"
#include "eval/multiple_choice.h"

using namespace emo;
using namespace emo::test;

namespace {

const std::string kSmall = (source_dir() / "tests/eval/data/mc_small.jsonl").string();
const std::string kFewshot = (source_dir() / "tests/eval/data/mc_fewshot.jsonl").string();
const std::string kMmluDescription = "The following are multiple choice questions (with answers) about {subject}.\n\n";

void write(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }

}  // namespace

TEST_CASE("mc: reading rows, bad rows name the line", "[eval][mc][bad-input]") {
  auto items = read_mc_jsonl(kSmall);
  REQUIRE(items.size() == 8);
  CHECK(items[0].id == "arc-photosynthesis");
  CHECK(items[0].choices.size() == 4);
  CHECK(items[0].answer == 1);
  CHECK(items[3].subject == "high_school_mathematics");
  CHECK(items[6].query.rfind("Cooking: How to boil an egg.", 0) == 0);
  CHECK(items[7].line == 8);
  TempDir tmp;
  auto bad = [&](const std::string& text, const std::string& what) {
    write(tmp / "bad.jsonl", text);
    CHECK_THROWS_WITH(read_mc_jsonl((tmp / "bad.jsonl").string()), Catch::Contains(what));
  };
  const std::string ok = "{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"answer\": 0}\n";
  bad(ok + "{\"choices\": [\"a\", \"b\"], \"answer\": 0}\n",
      "bad.jsonl: line 2: missing key \"question\" (or \"query\")");
  bad(ok + ok + "{\"question\": \"q\", \"answer\": 0}\n", "line 3: missing key \"choices\"");
  bad("{\"question\": \"q\", \"choices\": [\"a\", \"b\"]}\n", "line 1: missing key \"answer\"");
  bad("{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"answer\": 2}\n", "line 1: \"answer\" 2 is not an index");
  bad("{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"answer\": \"A\"}\n",
      "line 1: \"answer\" must be the index");
  bad("{\"question\": \"q\", \"choices\": [\"a\"], \"answer\": 0}\n", "at least two");
  bad("{\"question\": \"q\", \"choices\": [\"a\", \"\"], \"answer\": 0}\n", "empty choice");
  bad("{\"question\": 5, \"choices\": [\"a\", \"b\"], \"answer\": 0}\n", "\"question\" must be a string");
  bad("\n\n", "empty file");
}

TEST_CASE("mc: prompts as OLMES builds them (cloze, verbatim query, few-shot, MMLU description)", "[eval][mc]") {
  auto items = read_mc_jsonl(kSmall);
  auto fewshot = read_mc_jsonl(kFewshot);
  McPromptOptions o;
  CHECK(mc_context(items[0], fewshot, o) ==
        "Question: Which gas do plants take in from the air to make their food?\nAnswer:");
  o.template_name = "plain";
  CHECK(mc_context(items[0], fewshot, o) == "Which gas do plants take in from the air to make their food?");
  // A query is the prompt whatever the template.
  CHECK(mc_context(items[6], fewshot, o) ==
        "Cooking: How to boil an egg. Put the egg in a small pot and cover it with cold water.");
  o.template_name = "rc";
  o.shots = 2;
  // Few-shot: each example "Question: q\nAnswer: <gold>", joined and followed by a blank line.
  CHECK(mc_context(items[0], fewshot, o) ==
        "Question: What do bees make?\nAnswer: honey\n\n"
        "Question: Which planet is closest to the Sun?\nAnswer: Mercury\n\n"
        "Question: Which gas do plants take in from the air to make their food?\nAnswer:");
  // With subjects, only the item's subject's examples, in file order; the description
  // names the subject with spaces (MMLU's _format_subject).
  o.description = kMmluDescription;
  CHECK(mc_context(items[3], fewshot, o) ==
        "The following are multiple choice questions (with answers) about high school mathematics.\n\n"
        "Question: What is 3 + 4?\nAnswer: 7\n\n"
        "Question: What is 10 / 2?\nAnswer: 5\n\n"
        "Question: What is 7 \xC3\x97 8?\nAnswer:");
  o.shots = 0;
  CHECK(mc_context(items[5], fewshot, o) ==
        "The following are multiple choice questions (with answers) about computer security.\n\n"
        "Question: Which of these is a hash function?\nAnswer:");
  // More shots than the subject has; a description naming a subject the row lacks.
  o.shots = 2;
  CHECK_THROWS_WITH(
      mc_context(items[5], fewshot, o, kFewshot),
      Catch::Contains("subject computer_security") && Catch::Contains("asked for 2 few-shot examples but only 1"));
  CHECK_THROWS_WITH(mc_context(items[0], fewshot, o), Catch::Contains("has no \"subject\""));
  o.description.clear();
  o.shots = 6;
  CHECK_THROWS_WITH(mc_context(items[0], fewshot, o), Catch::Contains("only 5 are available"));
  CHECK_THROWS_WITH(mc_context(items[0], {}, o), Catch::Contains("no --fewshot file"));
}

TEST_CASE("mc: the metric rules on hand-worked numbers (MCAccuracy.process_one_doc)", "[eval][mc]") {
  McScored e;
  e.gold = 2;
  // sum_logits -10, -12, -30; tokens 5, 2, 10; characters 10, 30, 100.
  e.sum_logprob = {-10, -12, -30};
  e.tokens = {5, 2, 10};
  e.chars = {10, 30, 100};
  mc_predict(e);
  CHECK(e.pred_raw == 0);        // -10 is the largest sum
  CHECK(e.pred_per_token == 0);  // -2, -6, -3 per token
  CHECK(e.pred_per_char == 2);   // -1, -0.4, -0.3 per character
  CHECK(e.pred_uncond == -1);
  // Unconditioned: -10 - (-1) = -9, -12 - (-8) = -4, -30 - (-27) = -3.
  e.sum_logprob_uncond = {-1, -8, -27};
  mc_predict(e);
  CHECK(e.pred_uncond == 2);
  // Ties go to the first maximum, as Python's max() does.
  CHECK(first_argmax({-3, -1, -1}) == 1);
  CHECK(first_argmax({-2, -2}) == 0);
  // A zero-token or zero-character choice divides by 1 (max(n, 1)).
  McScored z;
  z.sum_logprob = {-3, -4};
  z.tokens = {0, 2};
  z.chars = {0, 8};
  mc_predict(z);
  CHECK(z.pred_per_token == 1);  // -3 / 1 < -4 / 2
  CHECK(z.pred_per_char == 1);   // -3 / 1 < -4 / 8
}

TEST_CASE("mc: scores equal one forward pass per choice, accuracies follow the rules", "[eval][mc]") {
  EvalModel& em = eval_model();
  auto items = read_mc_jsonl(kSmall);
  auto fewshot = read_mc_jsonl(kFewshot);
  McOptions o;
  o.prompt.shots = 1;
  o.uncond = true;
  o.batch = 5;
  McResult r = evaluate_mc(*em.model, *em.tokenizer, items, fewshot, o);
  REQUIRE(r.examples.size() == items.size());
  size_t raw = 0, per_token = 0, per_char = 0, uncond = 0;
  for (size_t k = 0; k < items.size(); ++k) {
    INFO(items[k].id);
    const McScored& e = r.examples[k];
    std::string ctx = mc_context(items[k], fewshot, o.prompt);
    std::vector<double> sums, tok_norm, char_norm, unc;
    for (size_t c = 0; c < items[k].choices.size(); ++c) {
      std::string cont = " " + items[k].choices[c];
      auto [ci, ki] = encode_pair(*em.tokenizer, ctx, cont, 8000);
      std::vector<int32_t> all = ci;
      all.insert(all.end(), ki.begin(), ki.end());
      std::vector<double> lp = reference_logprobs(*em.model, all);
      double s = 0;
      for (size_t t = ci.size() - 1; t < lp.size(); ++t) s += lp[t];
      auto [cu, ku] = encode_pair(*em.tokenizer, "Answer:", cont, 8000);
      std::vector<int32_t> allu = cu;
      allu.insert(allu.end(), ku.begin(), ku.end());
      std::vector<double> lpu = reference_logprobs(*em.model, allu);
      double su = 0;
      for (size_t t = cu.size() - 1; t < lpu.size(); ++t) su += lpu[t];
      CHECK(e.sum_logprob[c] == Approx(s).epsilon(1e-5));
      CHECK(e.sum_logprob_uncond[c] == Approx(su).epsilon(1e-5));
      CHECK(e.tokens[c] == int64_t(ki.size()));
      CHECK(e.chars[c] == utf8_length(cont));
      sums.push_back(s);
      tok_norm.push_back(s / double(ki.size()));
      char_norm.push_back(s / double(utf8_length(cont)));
      unc.push_back(s - su);
    }
    auto arg = [](const std::vector<double>& v) { return int(std::max_element(v.begin(), v.end()) - v.begin()); };
    CHECK(e.pred_raw == arg(sums));
    CHECK(e.pred_per_token == arg(tok_norm));
    CHECK(e.pred_per_char == arg(char_norm));
    CHECK(e.pred_uncond == arg(unc));
    raw += e.pred_raw == items[k].answer;
    per_token += e.pred_per_token == items[k].answer;
    per_char += e.pred_per_char == items[k].answer;
    uncond += e.pred_uncond == items[k].answer;
  }
  CHECK(r.examples[1].chars == std::vector<size_t>{6, 7, 7});  // " 100 °C": 7 characters, 8 bytes
  CHECK(r.acc_raw == raw);
  CHECK(r.acc_per_token == per_token);
  CHECK(r.acc_per_char == per_char);
  CHECK(r.acc_uncond == uncond);
  Json s = summary_json(r);
  CHECK(s["primary_metric"] == "acc_per_char");
  CHECK(s["acc_per_char"]["correct"] == per_char);
  CHECK(s["acc_per_char"]["value"].get<double>() == Approx(double(per_char) / 8));
  CHECK(s["primary_score"].get<double>() == Approx(double(per_char) / 8));
  // Prefix reuse changes nothing.
  o.share_prefix = false;
  o.batch = 1;
  McResult alone = evaluate_mc(*em.model, *em.tokenizer, items, fewshot, o);
  for (size_t k = 0; k < items.size(); ++k)
    for (size_t c = 0; c < items[k].choices.size(); ++c)
      CHECK(alone.examples[k].sum_logprob[c] == Approx(r.examples[k].sum_logprob[c]).epsilon(1e-5));
}

TEST_CASE("emo eval mc: summary and per-question records, bad input", "[eval][mc][cli]") {
  EvalModel& em = eval_model();
  TempDir tmp;
  std::string base = "eval mc --model " + em.dir.string() + " --data " + kSmall;
  RunResult r = run_emo(base + " --fewshot " + kFewshot + " --shots 1 --json --out " + (tmp / "run").string());
  INFO(r.err);
  REQUIRE(r.code == 0);
  Json s = Json::parse(r.out);
  CHECK(s["items"] == 8);
  CHECK(s["shots"] == 1);
  CHECK(s["template"] == "rc");
  CHECK(s["primary_metric"] == "acc_per_char");
  for (const char* k : {"acc_raw", "acc_per_token", "acc_per_char"}) {
    CHECK(s[k]["total"] == 8);
    CHECK(s[k]["ci95"][0].get<double>() <= s[k]["value"].get<double>());
    CHECK(s[k]["ci95"][1].get<double>() >= s[k]["value"].get<double>());
  }
  CHECK_FALSE(s.contains("acc_uncond"));
  // The records agree with the library.
  McOptions o;
  o.prompt.shots = 1;
  McResult lib = evaluate_mc(*em.model, *em.tokenizer, read_mc_jsonl(kSmall), read_mc_jsonl(kFewshot), o);
  CHECK(s["acc_per_char"]["correct"] == lib.acc_per_char);
  CHECK(s["acc_raw"]["correct"] == lib.acc_raw);
  JsonlReader reader((tmp / "run/examples.jsonl").string());
  Json rec;
  size_t n = 0;
  while (reader.next(rec)) {
    CHECK(rec["predicted_per_char"] == lib.examples[n].pred_per_char);
    CHECK(rec["sum_logprob"].size() == lib.examples[n].sum_logprob.size());
    ++n;
  }
  CHECK(n == 8);
  // The text output marks the primary metric.
  RunResult text = run_emo(base + " --uncond --primary-metric acc_uncond --limit 3");
  REQUIRE(text.code == 0);
  CHECK(text.out.find("acc_uncond *") != std::string::npos);
  CHECK(text.out.find("3 questions") != std::string::npos);
  // Bad input: one line on stderr, non-zero exit.
  RunResult shots = run_emo(base + " --fewshot " + kFewshot + " --shots 9");
  CHECK(shots.code != 0);
  CHECK(shots.err.find("mc_fewshot.jsonl: asked for 9 few-shot examples but only 5 are available") !=
        std::string::npos);
  CHECK(count_lines(shots.err) == 1);
  write(tmp / "bad.jsonl",
        "{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"answer\": 0}\n{\"question\": \"q\"}\n");
  RunResult bad = run_emo("eval mc --model " + em.dir.string() + " --data " + (tmp / "bad.jsonl").string());
  CHECK(bad.code != 0);
  CHECK(bad.err.find("bad.jsonl: line 2: missing key \"choices\"") != std::string::npos);
  write(tmp / "empty.jsonl", "");
  RunResult empty = run_emo("eval mc --model " + em.dir.string() + " --data " + (tmp / "empty.jsonl").string());
  CHECK(empty.code != 0);
  CHECK(empty.err.find("empty file") != std::string::npos);
  RunResult unc = run_emo(base + " --primary-metric acc_uncond");
  CHECK(unc.code != 0);
  CHECK(unc.err.find("needs --uncond") != std::string::npos);
}
