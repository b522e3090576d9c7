// GSM8K evaluation: the corpus splits, bits per byte worked by hand from one forward pass
// per item, `emo eval gsm8k` reporting the same numbers, grading of generations, batched
// generation equal to unbatched, and bad input.
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <set>

#include "cli_util.h"
#include "core/checkpoint/experts.h"
#include "core/io/jsonl.h"
#include "core/io/sha256.h"
#include "core/model/generate.h"
#include "core/util/source_dir.h"
#include "eval/eval_fixtures.h"
#include "eval/gsm8k_eval.h"
#include "eval/gsm8k_request.h"

using namespace emo;
using namespace emo::test;

namespace {

const std::string kTrain = (data_dir() / "gsm8k/train.jsonl").string();

// Lines (1-based) of data/gsm8k/train.jsonl, and their targets as worked by hand in
// tests/core/test_gsm8k.cpp: annotations, "$", a thousands separator, no full stops,
// negative numbers, a no-break space.
struct HandItem {
  size_t line;
  const char* target;
};
const std::vector<HandItem>& hand_items() {
  static const std::vector<HandItem> k = {
      {1,
       " Natalia sold 48 / 2 = 24 clips in May. Natalia sold 48 + 24 = 72 clips altogether in April and May. So the "
       "answer is 72."},
      {2, " Weng earns 12 / 60 = $0.2 per minute. Working 50 minutes, she earned 0.2 x 50 = $10. So the answer is 10."},
      {346,
       " The amount of money deducted from Adam's daily pay is $40 / 10 = $4. So after deducting 10%, "
       "Adam\xE2\x80\x99s "
       "daily pay is $40 \xE2\x80\x93 $4 = $36. This means that in 30 days he earns $36 * 30 = $1080. So the answer "
       "is 1,080."},
      {702,
       " He got 3 * 12 = 36 slices So each slice cost 72 / 36 = $2 So 5 slices would cost 5 * 2 = $10. So the answer "
       "is 10."},
      {5716,
       " - 14 + ( - 8) + 1 = - 21 degrees Fahrenheit - 21 / 3 = - 7 degrees Fahrenheit The average temperature was "
       "- 7 degrees Fahrenheit. So the answer is - 7."},
      {6181,
       " The large paintings have used 3 * 3 = 9 ounces. The small paintings have used 2 * 4 = 8 ounces. In total, "
       "all the paintings have used 9 + 8 = 17 ounces. So the answer is 17."},
  };
  return k;
}

// The hand items' lines of train.jsonl, verbatim, as a GSM8K file.
fs::path write_hand_file(const TempDir& tmp) {
  std::ifstream in(kTrain);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  fs::path p = tmp / "hand.jsonl";
  std::ofstream out(p);
  for (const auto& h : hand_items()) out << lines.at(h.line - 1) << "\n";
  return p;
}

void write(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }

struct HandBpb {
  std::vector<double> sums;
  std::vector<size_t> bytes;
  double total() const {
    double s = 0;
    size_t b = 0;
    for (size_t i = 0; i < sums.size(); ++i) s += sums[i], b += bytes[i];
    return -s / (double(b) * std::log(2.0));
  }
};

// Bits per byte worked by hand: tokens as lm-eval splits them, one plain forward pass
// over context + target, the target tokens' log-probabilities summed, divided by the
// target's UTF-8 bytes times ln 2.
HandBpb hand_bpb(const std::vector<GsmSplitItem>& items, int shots, const RoutingControl* rc = nullptr) {
  EvalModel& em = eval_model();
  HandBpb h;
  for (const auto& it : items) {
    std::string ctx = gsm8k_context(it.item.question, shots), target = gsm8k_target(it.item);
    std::vector<int32_t> c = em.tokenizer->encode(ctx);
    std::vector<int32_t> whole = em.tokenizer->encode(ctx + target);
    REQUIRE(std::equal(c.begin(), c.end(), whole.begin()));  // the split falls on a token boundary
    std::vector<double> lp = reference_logprobs(*em.model, whole, rc);
    double s = 0;
    for (size_t t = c.size() - 1; t < lp.size(); ++t) s += lp[t];
    h.sums.push_back(s);
    h.bytes.push_back(target.size());
  }
  return h;
}

}  // namespace

TEST_CASE("gsm8k_split_items: the corpus valid split holds 743 train items, the train split the rest it names",
          "[eval][gsm8k]") {
  auto valid = gsm8k_split_items(kTrain, (data_dir() / "corpus/valid.jsonl.gz").string());
  auto train = gsm8k_split_items(kTrain, (data_dir() / "corpus/train.jsonl.gz").string());
  CHECK(valid.size() == 743);
  CHECK(train.size() == 5916);
  std::vector<GsmItem> all = gsm8k_read_jsonl(kTrain);
  std::set<size_t> seen;
  for (const auto* split : {&valid, &train})
    for (size_t i = 0; i < split->size(); ++i) {
      const GsmSplitItem& it = (*split)[i];
      CHECK(it.id == "gsm8k-train-" + std::to_string(it.line));
      CHECK(it.item.question == all.at(it.line).question);
      CHECK(it.item.answer == all.at(it.line).answer);
      if (i) CHECK(it.line > (*split)[i - 1].line);
      CHECK(seen.insert(it.line).second);  // the splits do not overlap
    }
  // The first line of the corpus valid file is gsm8k-train-12.
  CHECK(std::any_of(valid.begin(), valid.end(), [](const GsmSplitItem& s) { return s.id == "gsm8k-train-12"; }));
}

TEST_CASE("gsm8k eval: bad input names the file and line", "[eval][gsm8k][bad-input]") {
  TempDir tmp;
  write(tmp / "missing.jsonl", "{\"question\": \"q?\", \"answer\": \"a\\n#### 1\"}\n{\"question\": \"only\"}\n");
  CHECK_THROWS_WITH(gsm8k_file_items((tmp / "missing.jsonl").string()),
                    Catch::Contains("missing.jsonl: line 2: missing key \"answer\""));
  write(tmp / "nohash.jsonl", "\n{\"question\": \"q?\", \"answer\": \"just 4\"}\n");
  CHECK_THROWS_WITH(gsm8k_file_items((tmp / "nohash.jsonl").string()),
                    Catch::Contains("line 2") && Catch::Contains("no \"#### N\""));
  write(tmp / "empty.jsonl", "\n\n");
  CHECK_THROWS_WITH(gsm8k_file_items((tmp / "empty.jsonl").string()), Catch::Contains("empty file"));
  write(tmp / "notjson.jsonl", "{\"question\": \"q?\", \"answer\": \"#### 1\"}\nnot json\n");
  CHECK_THROWS_WITH(gsm8k_file_items((tmp / "notjson.jsonl").string()), Catch::Contains("line 2"));
  // A corpus that does not belong to the GSM8K file.
  write(tmp / "c1.jsonl", "{\"id\": \"gsm8k-train-99999\", \"domain\": \"math\", \"text\": \"x\"}\n");
  CHECK_THROWS_WITH(gsm8k_split_items(kTrain, (tmp / "c1.jsonl").string()),
                    Catch::Contains("c1.jsonl: line 1") && Catch::Contains("has no item there"));
  write(tmp / "c2.jsonl",
        "{\"id\": \"other\", \"text\": \"x\"}\n{\"id\": \"gsm8k-train-0\", \"text\": \"another question\"}\n");
  CHECK_THROWS_WITH(gsm8k_split_items(kTrain, (tmp / "c2.jsonl").string()),
                    Catch::Contains("line 2") && Catch::Contains("do not belong together"));
  write(tmp / "c3.jsonl", "{\"id\": \"code-1\", \"text\": \"x\"}\n");
  CHECK_THROWS_WITH(gsm8k_split_items(kTrain, (tmp / "c3.jsonl").string()), Catch::Contains("no \"gsm8k-train-N\""));
  // More shots than STD:GSM8k has.
  EvalModel& em = eval_model();
  Gsm8kEvalOptions o;
  o.shots = 9;
  auto items = gsm8k_file_items(write_hand_file(tmp).string());
  CHECK_THROWS_WITH(evaluate_gsm8k_bpb(*em.model, *em.tokenizer, items, o), Catch::Contains("0 to 8"));
  CHECK_THROWS_WITH(evaluate_gsm8k_generate(*em.model, *em.tokenizer, items, o), Catch::Contains("0 to 8"));
}

TEST_CASE("gsm8k bits per byte equals the hand-worked value on six items, emo eval gsm8k reports it",
          "[eval][gsm8k][cli]") {
  TempDir tmp;
  fs::path file = write_hand_file(tmp);
  auto items = gsm8k_file_items(file.string());
  REQUIRE(items.size() == hand_items().size());
  EvalModel& em = eval_model();
  for (int shots : {8, 0}) {
    INFO("shots " << shots);
    HandBpb hand = hand_bpb(items, shots);
    Gsm8kEvalOptions o;
    o.shots = shots;
    o.batch = 4;
    Gsm8kBpbResult r = evaluate_gsm8k_bpb(*em.model, *em.tokenizer, items, o, true);
    for (size_t i = 0; i < items.size(); ++i) {
      INFO("train.jsonl line " << hand_items()[i].line);
      const Gsm8kScored& e = r.examples[i];
      CHECK(e.target == hand_items()[i].target);
      CHECK(e.target_bytes == std::string(hand_items()[i].target).size());
      CHECK(e.sum_logprob == Approx(hand.sums[i]).epsilon(1e-5));
      CHECK(e.bits_per_byte == Approx(-hand.sums[i] / (double(hand.bytes[i]) * std::log(2.0))).epsilon(1e-5));
      CHECK(e.prompt_sha256 == sha256_hex(gsm8k_context(items[i].item.question, shots)));
      CHECK_FALSE(e.truncated);
    }
    CHECK(r.examples[0].target_bytes == 121);
    CHECK(r.bits_per_byte() == Approx(hand.total()).epsilon(1e-5));
    // The command reports the same, per item and in total.
    fs::path out = tmp / ("run" + std::to_string(shots));
    RunResult run = run_emo("eval gsm8k --model " + em.dir.string() + " --data " + file.string() + " --shots " +
                            std::to_string(shots) + " --batch 3 --token-logprobs --json --out " + out.string());
    INFO(run.err);
    REQUIRE(run.code == 0);
    Json summary = Json::parse(run.out);
    CHECK(summary["bits_per_byte"].get<double>() == Approx(hand.total()).epsilon(1e-5));
    CHECK(summary["items"] == 6);
    CHECK(summary["shots"] == shots);
    CHECK(summary["protocol"] == "emo");
    CHECK(summary["tokens_per_second"].get<double>() > 0);
    CHECK(Json::parse(read_text_file(out / "summary.json")) == summary);
    JsonlReader reader((out / "examples.jsonl").string());
    Json rec;
    size_t i = 0;
    while (reader.next(rec)) {
      REQUIRE(i < items.size());
      CHECK(rec["id"] == "hand-" + std::to_string(i));
      CHECK(rec["target"] == hand_items()[i].target);
      CHECK(rec["bits_per_byte"].get<double>() ==
            Approx(-hand.sums[i] / (double(hand.bytes[i]) * std::log(2.0))).epsilon(1e-5));
      double s = 0;
      for (const auto& v : rec["token_logprobs"]) s += v.get<double>();
      CHECK(s == Approx(hand.sums[i]).epsilon(1e-5));
      ++i;
    }
    CHECK(i == items.size());
  }
}

TEST_CASE("gsm8k --experts: the full model restricted to a module's experts", "[eval][gsm8k][cli]") {
  TempDir tmp;
  fs::path file = write_hand_file(tmp);
  auto items = gsm8k_file_items(file.string());
  items.resize(2);
  EvalModel& em = eval_model();
  ExpertSelection sel;
  sel.kept = {{0, {0, 2, 3}}, {1, {1, 4}}};
  sel.save((tmp / "module.json").string());
  RoutingControl rc = routing_for(sel, em.model->config());
  HandBpb hand = hand_bpb(items, 0, &rc), full = hand_bpb(items, 0);
  CHECK(std::abs(hand.total() - full.total()) > 1e-3);
  RunResult run = run_emo("eval gsm8k --model " + em.dir.string() + " --data " + file.string() +
                          " --shots 0 --limit 2 --json --experts " + (tmp / "module.json").string());
  INFO(run.err);
  REQUIRE(run.code == 0);
  Json s = Json::parse(run.out);
  CHECK(s["bits_per_byte"].get<double>() == Approx(hand.total()).epsilon(1e-5));
  CHECK(s["experts"] == (tmp / "module.json").string());
}

TEST_CASE("gsm8k emo-perplexity protocol scores EMO's gsm8k_perplexity request", "[eval][gsm8k]") {
  TempDir tmp;
  auto items = gsm8k_file_items(write_hand_file(tmp).string());
  items.resize(1);
  Gsm8kEvalOptions o;
  o.protocol = "emo-perplexity";
  o.shots = 2;
  auto [ctx, cont] = gsm8k_request(items[0].item, o);
  CHECK(cont ==
        "  Natalia sold 48 / 2 = 24 clips in May. Natalia sold 48 + 24 = 72 clips altogether in April and May. "
        "So the answer is 72.");
  CHECK(ctx.find("So the answer is 6. So the answer is 6.") != std::string::npos);
  EvalModel& em = eval_model();
  Gsm8kBpbResult r = evaluate_gsm8k_bpb(*em.model, *em.tokenizer, items, o);
  CHECK(r.examples[0].target == cont);
  CHECK(r.bytes == cont.size());
  o.protocol = "other";
  CHECK_THROWS_WITH(gsm8k_request(items[0].item, o), Catch::Contains("unknown GSM8K protocol"));
}

TEST_CASE("gsm8k grading of generations: cut at the stop sequence, extract, compare", "[eval][gsm8k]") {
  struct G {
    const char* generated;
    const char* gold;
    const char* output;
    std::optional<std::string> extracted;
    bool correct, exact_match;
  };
  const std::vector<G> cases = {
      {" 48 / 2 = 24. So the answer is 72.\n\nQuestion: 5 + 5?", "x\n#### 72", " 48 / 2 = 24. So the answer is 72.",
       "72", true, true},
      {" It costs $1,234.00.\nQuestion: more 99", "#### 1,234", " It costs $1,234.00.\n", "1234", true, false},
      {" So the answer is - 7.", "x\n#### -7", " So the answer is - 7.", "7", false, true},
      {" So the answer is -7.", "x\n#### -7", " So the answer is -7.", "-7", true, true},
      {" #### 18.0</s>junk 3", "#### 18", " #### 18.0", "18", true, false},
      {" I do not know.", "#### 3", " I do not know.", std::nullopt, false, false},
      {" 3 apples, 5 pears, 8 in all", "#### 8", " 3 apples, 5 pears, 8 in all", "8", true, true},
  };
  for (const auto& c : cases) {
    INFO(c.generated);
    Gsm8kGenerated e;
    gsm8k_grade(e, c.generated, c.gold);
    CHECK(e.output == c.output);
    CHECK(e.extracted == c.extracted);
    CHECK(e.correct == c.correct);
    CHECK(e.exact_match == c.exact_match);
  }
}

TEST_CASE("gsm8k --generate: batched equals unbatched, token for token, and the records agree", "[eval][gsm8k][cli]") {
  TempDir tmp;
  fs::path file = write_hand_file(tmp);
  auto items = gsm8k_file_items(file.string());
  EvalModel& em = eval_model();
  Gsm8kEvalOptions o;
  o.shots = 2;
  o.max_new_tokens = 20;
  o.batch = 4;
  Gsm8kGenerateResult batched = evaluate_gsm8k_generate(*em.model, *em.tokenizer, items, o);
  o.batch = 1;
  o.share_prefix = false;
  Gsm8kGenerateResult alone = evaluate_gsm8k_generate(*em.model, *em.tokenizer, items, o);
  CHECK(batched.stats.shared_prefix > 50);
  size_t correct = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    INFO("item " << i);
    const Gsm8kGenerated& e = batched.examples[i];
    CHECK(e.tokens == alone.examples[i].tokens);
    std::vector<int32_t> ids = em.tokenizer->encode(gsm8k_context(items[i].item.question, 2));
    GenerateOptions go;
    go.max_new_tokens = 20;
    go.stop_ids = {8000};
    std::vector<int64_t> want = generate(*em.model, {std::vector<int64_t>(ids.begin(), ids.end())}, go).tokens[0];
    // generate() knows no stop strings: ours stops at one or runs as long.
    REQUIRE(e.tokens.size() <= want.size());
    CHECK(std::equal(e.tokens.begin(), e.tokens.end(), want.begin()));
    std::string text = em.tokenizer->decode(std::vector<int32_t>(e.tokens.begin(), e.tokens.end()), true);
    Gsm8kGenerated g;
    gsm8k_grade(g, text, items[i].item.answer);
    CHECK(e.output == g.output);
    CHECK(e.extracted == g.extracted);
    CHECK(e.gold == gsm8k_normalize_number(gsm8k_short_answer(items[i].item.answer)));
    correct += e.correct;
  }
  CHECK(batched.correct == correct);
  CHECK(batched.examples[4].gold == "-7");
  CHECK(batched.examples[2].gold == "1080");
  // The command: same outputs with --batch 1 and --batch 6, written per example.
  std::string args = "eval gsm8k --model " + em.dir.string() + " --data " + file.string() +
                     " --generate --shots 2 --max-new-tokens 20 --json";
  RunResult a = run_emo(args + " --batch 6 --out " + (tmp / "a").string());
  RunResult b = run_emo(args + " --batch 1 --no-prefix-cache --out " + (tmp / "b").string());
  INFO(a.err << b.err);
  REQUIRE(a.code == 0);
  REQUIRE(b.code == 0);
  CHECK(read_text_file(tmp / "a/examples.jsonl") == read_text_file(tmp / "b/examples.jsonl"));
  Json s = Json::parse(a.out);
  CHECK(s["accuracy"]["correct"] == batched.correct);
  CHECK(s["accuracy"]["total"] == 6);
  CHECK(s["exact_match"]["correct"] == batched.exact_match);
  CHECK(s["new_tokens"].get<uint64_t>() > 0);
  CHECK(s["tokens_per_second"].get<double>() > 0);
  JsonlReader r((tmp / "a/examples.jsonl").string());
  Json rec;
  for (size_t i = 0; r.next(rec); ++i) {
    CHECK(rec["output"] == batched.examples[i].output);
    CHECK(rec["gold"] == batched.examples[i].gold);
    CHECK(rec["correct"] == batched.examples[i].correct);
  }
  // Bad input through the command: one line, non-zero exit.
  RunResult shots = run_emo("eval gsm8k --model " + em.dir.string() + " --data " + file.string() + " --shots 9");
  CHECK(shots.code != 0);
  CHECK(shots.err.find("more shots than the 8 STD:GSM8k exemplars") != std::string::npos);
  CHECK(count_lines(shots.err) == 1);
  write(tmp / "bad.jsonl", "{\"question\": \"q\"}\n");
  RunResult bad = run_emo("eval gsm8k --model " + em.dir.string() + " --data " + (tmp / "bad.jsonl").string());
  CHECK(bad.code != 0);
  CHECK(bad.err.find("bad.jsonl: line 1: missing key \"answer\"") != std::string::npos);
  write(tmp / "empty.jsonl", "");
  RunResult empty = run_emo("eval gsm8k --model " + em.dir.string() + " --data " + (tmp / "empty.jsonl").string());
  CHECK(empty.code != 0);
  CHECK(empty.err.find("empty file") != std::string::npos);
}

TEST_CASE("gsm8k and mc requests from their fields: defaults, choices, the shipped split", "[eval][gsm8k][mc][bad-input]") {
  const auto& gsm = gsm8k_request_spec();
  Gsm8kRequest g = build_request(gsm, {{"model", {"m"}}, {"limit", {"50"}}, {"generate", {}}, {"shots", {"4"}}});
  CHECK(g.split == "valid");
  CHECK(g.protocol == "emo");
  CHECK(g.generate);
  CHECK(g.shots == 4);
  CHECK(g.limit == 50);
  CHECK(build_request(gsm, {{"model", {"m"}}}).shots < 0);  // the paper's 8, resolved by run_gsm8k
  CHECK(field_spec(gsm.fields, "split").choices == std::vector<std::string>{"train", "valid"});
  const auto& mc = mc_request_spec();
  McRequest m = build_request(mc, {{"model", {"m"}}, {"data", {"arc.jsonl"}}, {"uncond", {}}, {"template", {"plain"}}});
  CHECK(m.uncond);
  CHECK(m.template_name == "plain");
  CHECK(m.primary == "acc_per_char");
  CHECK(field_spec(mc.fields, "fewshot").input_path);
  CHECK_THROWS_WITH(build_request(mc, {{"limit", {"x"}}}), Catch::Contains("--limit"));
  // The shipped valid split's GSM8K items, as `emo eval gsm8k` without --data reads them.
  std::string described;
  auto items = gsm8k_items_for("", "valid", fs::path(build_source_dir()) / "data", described);
  CHECK(items.size() == 743);
  CHECK_THAT(described, Catch::Contains("gsm8k/train.jsonl"));
  CHECK_THROWS_WITH(gsm8k_items_for("", "test", "data", described), Catch::Contains("expected train or valid"));
}
