// Teacher-forced scoring and batched generation of the eval layer against the slow path:
// one forward pass per sequence with no cache (scoring), recomputing the whole sequence
// per new token (generation), and core generate().
#include <catch2/catch.hpp>

#include <cmath>

#include "core/checkpoint/experts.h"
#include "core/model/generate.h"
#include "eval/eval_fixtures.h"
#include "eval/generate_until.h"
#include "eval/loglikelihood.h"

using namespace emo;
using namespace emo::test;

namespace {

// The continuation's log-likelihood the slow way, from the same token split.
double reference_sum(Model& m, const std::vector<int32_t>& ctx, const std::vector<int32_t>& cont,
                     const RoutingControl* rc = nullptr) {
  std::vector<int32_t> all = ctx;
  all.insert(all.end(), cont.begin(), cont.end());
  std::vector<double> lp = reference_logprobs(m, all, rc);
  double s = 0;
  for (size_t i = lp.size() - cont.size(); i < lp.size(); ++i) s += lp[i];
  return s;
}

// Requests that share a few-shot prefix, and choices that share a question.
std::vector<LoglikelihoodRequest> some_requests() {
  const std::string shots =
      "Question: What is 2 + 2?\nAnswer: 4\n\nQuestion: What colour is the sky?\nAnswer: blue\n\n";
  std::vector<LoglikelihoodRequest> r;
  for (const char* c : {"a horse", "a small grey cat", "the number 12"})
    r.push_back({shots + "Question: Name an animal.\nAnswer:", std::string(" ") + c});
  for (const char* c : {"Paris", "Lyon, a big city in the south", "Berlin"})
    r.push_back({shots + "Question: What is the capital of France?\nAnswer:", std::string(" ") + c});
  r.push_back({shots + "Question: Count to three.\nAnswer: ", "1, 2, 3"});  // trailing space moves
  r.push_back({"Answer:", " no shared prefix at all"});
  return r;
}

}  // namespace

TEST_CASE("encode_pair: trailing whitespace moves to the continuation, the split is of the joint encoding",
          "[eval][loglikelihood]") {
  Tokenizer tok = Tokenizer::load((data_dir() / "tokenizers/dolma2-8k").string());
  auto [ctx, cont] = encode_pair(tok, "Question: x\nAnswer: ", "yes", 8000);
  CHECK(ctx == tok.encode("Question: x\nAnswer:"));
  std::vector<int32_t> whole = tok.encode("Question: x\nAnswer: yes");
  CHECK(cont == std::vector<int32_t>(whole.begin() + long(ctx.size()), whole.end()));
  CHECK(tok.decode(cont) == " yes");
  // Several trailing whitespace characters move together. The joint encoding merges
  // ":\n\n" into one token, so the continuation is what lies past len(encode("A:")) of
  // it: lm-eval's quirk, reproduced.
  auto [c2, k2] = encode_pair(tok, "A:\n\n ", "b", 8000);
  CHECK(c2 == tok.encode("A:"));
  std::vector<int32_t> w2 = tok.encode("A:\n\n b");
  CHECK(k2 == std::vector<int32_t>(w2.begin() + long(c2.size()), w2.end()));
  // An empty context becomes the prefix token (HF's prefix_token_id).
  auto [c3, k3] = encode_pair(tok, "", " hello", 8000);
  CHECK(c3 == std::vector<int32_t>{8000});
  CHECK(k3 == tok.encode(" hello"));
  CHECK(utf8_length(" 100 °C") == 7);
  CHECK(std::string(" 100 °C").size() == 8);
}

TEST_CASE("score_loglikelihood equals one forward pass per request, shared prefix or not, batched or alone",
          "[eval][loglikelihood]") {
  EvalModel& em = eval_model();
  Model& m = *em.model;
  const Tokenizer& tok = *em.tokenizer;
  auto requests = some_requests();
  std::vector<double> expected;
  for (const auto& r : requests) {
    auto [ctx, cont] = encode_pair(tok, r.context, r.continuation, 8000);
    expected.push_back(reference_sum(m, ctx, cont));
  }
  for (bool share : {true, false})
    for (int64_t batch : {1, 3, 16}) {
      INFO("share_prefix " << share << ", batch " << batch);
      LoglikelihoodOptions o;
      o.share_prefix = share;
      o.batch = batch;
      o.keep_token_logprobs = true;
      LoglikelihoodStats st;
      auto got = score_loglikelihood(m, tok, requests, o, &st);
      REQUIRE(got.size() == requests.size());
      for (size_t i = 0; i < got.size(); ++i) {
        INFO("request " << i);
        CHECK(got[i].sum_logprob == Approx(expected[i]).epsilon(1e-5));
        double s = 0;
        for (float v : got[i].token_logprobs) s += v;
        CHECK(s == Approx(got[i].sum_logprob).epsilon(1e-6));
        CHECK(got[i].token_logprobs.size() == size_t(got[i].tokens));
        CHECK_FALSE(got[i].truncated);
      }
      if (share) {
        CHECK(st.shared_prefix > 20);  // the two exemplars (the "Answer:" request runs apart)
        CHECK(st.tokens_forwarded < st.tokens_requested);
      } else {
        CHECK(st.shared_prefix == 0);
        CHECK(st.tokens_forwarded == st.tokens_requested);
      }
    }
}

TEST_CASE("score_loglikelihood: greedy flag, module restriction, left truncation", "[eval][loglikelihood]") {
  EvalModel& em = eval_model();
  Model& m = *em.model;
  const Tokenizer& tok = *em.tokenizer;
  // is_greedy: a continuation made of the model's own greedy tokens is greedy.
  std::vector<int32_t> ctx = tok.encode("Question: Name a colour.\nAnswer:");
  auto g = greedy_by_recompute(m, std::vector<int64_t>(ctx.begin(), ctx.end()), 4);
  std::vector<int32_t> cont(g.begin(), g.end());
  LoglikelihoodOptions o;
  auto r = score_loglikelihood_tokens(m, {{ctx, cont}, {ctx, {cont[0], int32_t((cont[1] + 1) % 8000)}}}, o);
  CHECK(r[0].greedy);
  CHECK_FALSE(r[1].greedy);
  // A module's routing restriction is applied.
  ExpertSelection sel;
  sel.kept = {{0, {0, 1}}, {1, {2, 5}}};
  RoutingControl rc = routing_for(sel, m.config());
  o.routing = &rc;
  auto restricted = score_loglikelihood_tokens(m, {{ctx, cont}}, o);
  CHECK(restricted[0].sum_logprob == Approx(reference_sum(m, ctx, cont, &rc)).epsilon(1e-5));
  CHECK(std::abs(restricted[0].sum_logprob - r[0].sum_logprob) > 1e-3);
  // (ctx + cont)[-(L + 1):][:-1] with L = 12: the context loses its first tokens.
  o.routing = nullptr;
  o.max_length = 12;
  std::vector<int32_t> long_ctx = tok.encode("one two three four five six seven eight nine ten eleven twelve");
  std::vector<int32_t> c2 = tok.encode(" thirteen fourteen");
  REQUIRE(long_ctx.size() + c2.size() > 13);
  auto t = score_loglikelihood_tokens(m, {{long_ctx, c2}}, o);
  CHECK(t[0].truncated);
  std::vector<int32_t> kept(long_ctx.end() - long(13 - c2.size()), long_ctx.end());
  CHECK(t[0].sum_logprob == Approx(reference_sum(m, kept, c2)).epsilon(1e-5));
  o.max_length = 1;
  CHECK_THROWS_WITH(score_loglikelihood_tokens(m, {{long_ctx, c2}}, o),
                    Catch::Contains("longer than the model's context"));
}

TEST_CASE("generate_until: batched with a shared prefix == alone == core generate() == full recompute, token for token",
          "[eval][generate]") {
  EvalModel& em = eval_model();
  Model& m = *em.model;
  const Tokenizer& tok = *em.tokenizer;
  const std::string shots = "Question: 1 + 1?\nAnswer: 2\n\nQuestion: 2 + 3?\nAnswer: 5\n\n";
  std::vector<std::string> contexts = {
      shots + "Question: 4 + 4?\nAnswer:", shots + "Question: 10 - 3?\nAnswer:",
      shots + "Question: How many legs does a spider have?\nAnswer:", "Question: no shots\nAnswer:"};
  GenerateUntilOptions o;
  o.max_new_tokens = 12;
  o.batch = 3;
  GenerateUntilStats st;
  auto batched = generate_until(m, tok, contexts, o, &st);
  CHECK(st.shared_prefix < 10);  // the last context shares only "Question:" with the others
  o.batch = 4;
  contexts.pop_back();
  auto shared = generate_until(m, tok, contexts, o, &st);
  CHECK(st.shared_prefix > 15);  // the two exemplars
  o.batch = 1;
  o.share_prefix = false;
  contexts.push_back("Question: no shots\nAnswer:");
  auto alone = generate_until(m, tok, contexts, o, &st);
  CHECK(st.shared_prefix == 0);
  for (size_t i = 0; i < contexts.size(); ++i) {
    INFO("context " << i);
    std::vector<int32_t> ids = tok.encode(contexts[i]);
    std::vector<int64_t> prompt(ids.begin(), ids.end());
    GenerateOptions go;
    go.max_new_tokens = 12;
    CHECK(batched[i].tokens == alone[i].tokens);
    if (i < shared.size()) CHECK(shared[i].tokens == alone[i].tokens);
    CHECK(alone[i].tokens == generate(m, {prompt}, go).tokens[0]);
    CHECK(alone[i].tokens == greedy_by_recompute(m, prompt, 12));
    CHECK(alone[i].finish_reason == "length");
    CHECK(alone[i].text == tok.decode(std::vector<int32_t>(alone[i].tokens.begin(), alone[i].tokens.end()), true));
  }
}

TEST_CASE("generate_until: stop sequences end a row and cut its text, EOS ends it, long prompts are cut on the left",
          "[eval][generate]") {
  EvalModel& em = eval_model();
  Model& m = *em.model;
  const Tokenizer& tok = *em.tokenizer;
  const std::string ctx = "Question: Tell me a story.\nAnswer:";
  GenerateUntilOptions o;
  o.max_new_tokens = 16;
  auto free_run = generate_until(m, tok, {ctx}, o)[0];
  REQUIRE(free_run.tokens.size() == 16);
  // Stop at the text of generated token 5 (its first character(s)): the row ends there.
  std::string piece = tok.decode({int32_t(free_run.tokens[5])}, true);
  REQUIRE(!piece.empty());
  size_t first_at = free_run.text.find(piece);
  o.stop_sequences = {"NEVER-OCCURS", piece};
  auto stopped = generate_until(m, tok, {ctx}, o)[0];
  CHECK(stopped.finish_reason == "stop");
  CHECK(stopped.tokens.size() <= 6);
  CHECK(std::equal(stopped.tokens.begin(), stopped.tokens.end(), free_run.tokens.begin()));
  CHECK(stopped.continuation == free_run.text.substr(0, first_at));
  CHECK(cut_at_stop_sequences("a\n\nQuestion: b", {"Question:", "\n\n"}) == "a");
  CHECK(cut_at_stop_sequences("abc", {"", "x"}) == "abc");
  // EOS: treat generated token 3 as the end of sequence.
  o.stop_sequences.clear();
  o.stop_ids = {free_run.tokens[3]};
  auto eos = generate_until(m, tok, {ctx}, o)[0];
  CHECK(eos.finish_reason == "eos");
  CHECK(eos.tokens.size() <= 4);
  CHECK(eos.tokens.back() == free_run.tokens[3]);
  // oe-eval truncate_context: at most max_length - max_gen_toks prompt tokens, cut on the
  // left. (Stopped at the 5th greedy token: 2040 new tokens are not needed to see it.)
  o.max_new_tokens = 2040;
  std::vector<int32_t> ids = tok.encode(ctx);
  REQUIRE(ids.size() > 8);
  std::vector<int64_t> kept(ids.end() - 8, ids.end());
  std::vector<int64_t> want = greedy_by_recompute(m, kept, 5);
  o.stop_ids = {want[4]};
  auto cut = generate_until(m, tok, {ctx}, o);
  CHECK(cut[0].truncated);
  CHECK(cut[0].prompt_tokens == 8);
  CHECK(cut[0].finish_reason == "eos");
  REQUIRE(cut[0].tokens.size() <= 5);
  CHECK(std::equal(cut[0].tokens.begin(), cut[0].tokens.end(), want.begin()));
  o.truncate_context = false;
  CHECK_THROWS_WITH(generate_until(m, tok, {ctx}, o), Catch::Contains("exceeds the model's context (2048)"));
  o.max_new_tokens = 2048;
  CHECK_THROWS_WITH(generate_until(m, tok, {ctx}, o), Catch::Contains("leave no room for a prompt"));
}
