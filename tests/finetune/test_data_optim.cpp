// Training data (SFT masks, corpus packing, token cache, order), AdamW and the schedules.
#include <catch2/catch.hpp>

#include <set>

#include "core/text/gsm8k.h"
#include "finetune/data.h"
#include "finetune/freeze.h"
#include "finetune/optim.h"
#include "ft_util.h"

using namespace emo;
using namespace emo::test;

namespace {
const Tokenizer& tok8k() {
  static Tokenizer t = Tokenizer::load((data_dir() / "tokenizers/dolma2-8k/tokenizer.json").string());
  return t;
}
constexpr int32_t kEos = 8000;
}  // namespace

TEST_CASE("SFT: GSM8K examples use the shared prompt, loss on the answer and EOS only", "[finetune][data]") {
  TempDir dir;
  write_lines(dir / "g.jsonl", {R"({"question": "What is 2 + 3?", "answer": "2 + 3 = <<2+3=5>>5\n#### 5"})",
                                R"({"question": "Tom has 4 apples and eats 1. How many are left?", "answer": "4 - 1 = 3\n#### 3"})"});
  SftOptions o;
  o.shots = 0;
  auto d = load_sft((dir / "g.jsonl").string(), tok8k(), kEos, o);
  REQUIRE(d->size() == 2);
  CHECK(d->stats["format"] == "gsm8k");
  auto [prompt, completion] = gsm8k_sft_pair({"What is 2 + 3?", "2 + 3 = <<2+3=5>>5\n#### 5"}, 0);
  CHECK(prompt == "Question: What is 2 + 3?\nAnswer:");
  Sequence s = d->get(0);
  auto p_ids = tok8k().encode(prompt), full = tok8k().encode(prompt + completion);
  REQUIRE(s.ids.size() == full.size() + 1);
  CHECK(s.ids.back() == kEos);
  for (size_t i = 0; i < s.ids.size(); ++i) {
    INFO(i);
    CHECK(s.labels[i] == (i < p_ids.size() ? int32_t(kIgnoreIndex) : s.ids[i]));
  }
  CHECK(d->target_tokens(0) == int64_t(s.ids.size() - p_ids.size()));
  CHECK(tok8k().decode(std::vector<int32_t>(s.ids.begin() + int64_t(p_ids.size()), s.ids.end() - 1)) == completion);
  // 8 shots (the default) put the exemplars in the prompt; still no loss on them.
  SftOptions eight;
  auto d8 = load_sft((dir / "g.jsonl").string(), tok8k(), kEos, eight);
  CHECK(d8->length(0) > 300);
  CHECK(d8->target_tokens(0) == d->target_tokens(0));
}

TEST_CASE("SFT: prompt-completion, instruction and templates", "[finetune][data]") {
  TempDir dir;
  write_lines(dir / "pc.jsonl", {R"({"prompt": "2+2=", "completion": " 4"})"});
  write_lines(dir / "in.jsonl", {R"({"instruction": "Say hi", "input": "", "output": "hi"})"});
  write_lines(dir / "t.jsonl", {R"({"q": "x?", "a": 7})"});
  CHECK(detect_format((dir / "pc.jsonl").string()) == "prompt-completion");
  CHECK(detect_format((dir / "in.jsonl").string()) == "instruction");
  SftOptions o;
  auto pc = load_sft((dir / "pc.jsonl").string(), tok8k(), kEos, o);
  CHECK(pc->get(0).ids == [] {
    auto v = tok8k().encode("2+2= 4");
    v.push_back(kEos);
    return v;
  }());
  auto in = load_sft((dir / "in.jsonl").string(), tok8k(), kEos, o);
  CHECK(tok8k().decode(in->get(0).ids) == "Say hi\n\nResponse: hi<|endoftext|>");
  o.format = "prompt-completion";
  o.prompt_template = "Q: {q}\nA:";
  o.completion_template = " {a}";
  auto t = load_sft((dir / "t.jsonl").string(), tok8k(), kEos, o);
  CHECK(tok8k().decode(t->get(0).ids) == "Q: x?\nA: 7<|endoftext|>");
  CHECK(fill_template("{{literal}} {q}", Json::parse(R"({"q": "v"})"), "f", 1) == "{literal} v");
}

TEST_CASE("SFT: malformed lines, --skip-bad, empty data, truncation", "[finetune][data][bad-input]") {
  TempDir dir;
  write_lines(dir / "bad.jsonl", {R"({"prompt": "a", "completion": " b"})", R"({"prompt": "a", "comp)",
                                  R"({"prompt": "c", "completion": " d"})", R"({"prompt": "e"})"});
  SftOptions o;
  o.format = "prompt-completion";
  try {
    load_sft((dir / "bad.jsonl").string(), tok8k(), kEos, o);
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("line 2") != std::string::npos);
  }
  o.skip_bad = true;
  auto d = load_sft((dir / "bad.jsonl").string(), tok8k(), kEos, o);
  CHECK(d->size() == 2);
  CHECK(d->stats["skipped_bad"] == 2);
  write_lines(dir / "empty.jsonl", {""});
  o.skip_bad = false;
  CHECK_THROWS_WITH(load_sft((dir / "empty.jsonl").string(), tok8k(), kEos, o), Catch::Contains("empty dataset"));
  write_lines(dir / "long.jsonl", {R"({"prompt": "one two", "completion": " three four five six seven eight nine ten"})",
                                   R"({"prompt": "one two three four five six seven eight", "completion": " nine"})"});
  o.max_length = 6;
  auto l = load_sft((dir / "long.jsonl").string(), tok8k(), kEos, o);
  CHECK(l->stats["truncated"] == 2);
  CHECK(l->stats["dropped_no_completion"] == 1);  // the second lost its whole completion
  REQUIRE(l->size() == 1);
  CHECK(l->length(0) == 6);
  CHECK(l->get(0).ids.back() == kEos);
}

TEST_CASE("corpus: packed sequences keep document ids, EOS between documents, cached tokens", "[finetune][data]") {
  TempDir dir;
  write_lines(dir / "c.jsonl", {R"({"id": "1", "domain": "a", "text": "alpha beta gamma"})",
                                R"({"id": "2", "domain": "b", "text": "delta"})",
                                R"({"id": "3", "domain": "a", "text": "epsilon zeta eta theta iota kappa lambda"})"});
  CorpusOptions o;
  o.seq_len = 4;
  o.cache_dir = (dir / "cache").string();
  auto d = load_corpus((dir / "c.jsonl").string(), tok8k(), kEos, o);
  CHECK(d->stats["cache"] == "written");
  std::vector<int32_t> all;
  for (const char* t : {"alpha beta gamma", "delta", "epsilon zeta eta theta iota kappa lambda"}) {
    auto ids = tok8k().encode(t);
    all.insert(all.end(), ids.begin(), ids.end());
    all.push_back(kEos);
  }
  REQUIRE(d->size() == all.size() / 4);
  std::vector<int32_t> flat;
  for (size_t i = 0; i < d->size(); ++i) {
    Sequence s = d->get(i);
    CHECK(s.labels == s.ids);
    flat.insert(flat.end(), s.ids.begin(), s.ids.end());
  }
  CHECK(std::vector<int32_t>(all.begin(), all.begin() + int64_t(flat.size())) == flat);
  // Within a sequence the id changes right after each EOS.
  for (size_t i = 0; i < d->size(); ++i) {
    Sequence s = d->get(i);
    for (size_t t = 1; t < s.ids.size(); ++t) CHECK((s.docs[t] != s.docs[t - 1]) == (s.ids[t - 1] == kEos));
  }
  auto again = load_corpus((dir / "c.jsonl").string(), tok8k(), kEos, o);
  CHECK(again->stats["cache"] == "hit");
  CHECK(again->get(1).ids == d->get(1).ids);
  o.domain = "a";
  auto only_a = load_corpus((dir / "c.jsonl").string(), tok8k(), kEos, o);
  CHECK(only_a->stats["documents"] == 2);
  CHECK(only_a->stats["cache"] == "written");  // another filter, another cache entry
  o.domain = "zzz";
  CHECK_THROWS_WITH(load_corpus((dir / "c.jsonl").string(), tok8k(), kEos, o), Catch::Contains("empty dataset"));
  // Collated: positions restart per document through document_ids; targets skip nothing.
  MicroBatch mb = collate({d->get(0), d->get(1)}, 8001, true, torch::kCPU);
  CHECK(mb.document_ids.defined());
  CHECK(mb.rows == 2 * 3);
}

TEST_CASE("several sources: examples one after the other, a weight repeats or cuts a source, a batch mixes them",
          "[finetune][data]") {
  TempDir dir;
  write_lines(dir / "pc.jsonl", {R"({"prompt": "a", "completion": " b"})", R"({"prompt": "c", "completion": " d e"})"});
  write_lines(dir / "c.jsonl", {R"({"text": "alpha beta gamma delta epsilon zeta"})"});
  auto load = [&] {
    std::vector<std::unique_ptr<TrainData>> parts;
    parts.push_back(load_sft((dir / "pc.jsonl").string(), tok8k(), kEos, SftOptions{}));
    CorpusOptions co;
    co.seq_len = 3;
    parts.push_back(load_corpus((dir / "c.jsonl").string(), tok8k(), kEos, co));
    return parts;
  };
  auto sft = load_sft((dir / "pc.jsonl").string(), tok8k(), kEos, SftOptions{});
  CorpusOptions co;
  co.seq_len = 3;
  auto text = load_corpus((dir / "c.jsonl").string(), tok8k(), kEos, co);
  REQUIRE(text->size() >= 2);

  auto both = concat_data(load());
  REQUIRE(both->size() == sft->size() + text->size());
  CHECK(both->kind == "mixed");
  for (size_t i = 0; i < sft->size(); ++i) CHECK(both->get(i).ids == sft->get(i).ids);
  for (size_t i = 0; i < text->size(); ++i) {
    CHECK(both->get(sft->size() + i).ids == text->get(i).ids);
    CHECK(both->get(sft->size() + i).docs == text->get(i).docs);
    CHECK(both->target_tokens(sft->size() + i) == text->target_tokens(i));
    CHECK(both->label_tokens(sft->size() + i) == text->label_tokens(i));
  }
  REQUIRE(both->stats["sources"].size() == 2);
  CHECK(both->stats["sources"][0]["format"] == "prompt-completion");

  // Weights: the text twice over (each sequence again after the last), the SFT source's first half.
  auto weighted = concat_data(load(), {0.5, 2});
  REQUIRE(weighted->size() == 1 + 2 * text->size());
  CHECK(weighted->get(0).ids == sft->get(0).ids);
  for (size_t i = 0; i < 2 * text->size(); ++i) CHECK(weighted->get(1 + i).ids == text->get(i % text->size()).ids);
  CHECK(weighted->stats["sources"][1]["examples_per_epoch"] == 2 * text->size());
  CHECK(weighted->stats["sources"][1]["weight"] == 2.0);

  // One batch of both: the SFT row keeps its label mask, the text row its document ids, padding -1.
  MicroBatch mb = collate({both->get(0), both->get(sft->size())}, 8001, true, torch::kCPU);
  CHECK(mb.document_ids.defined());
  CHECK(mb.rows == both->target_tokens(0) + both->target_tokens(sft->size()));

  CHECK_THROWS_WITH(concat_data(load(), {1}), Catch::Contains("--data-weight: give one weight per --data (2); got 1"));
  CHECK_THROWS_WITH(concat_data(load(), {1, 0}), Catch::Contains("--data-weight: 0: must be a positive number"));
}

TEST_CASE("batch order: a seeded permutation per epoch, split over ranks", "[finetune][data]") {
  BatchOrder a(10, 4, false, true, 7), b(10, 4, false, true, 7), c(10, 4, false, true, 8);
  CHECK(a.steps_per_epoch() == 3);
  std::vector<size_t> epoch0;
  for (int s = 0; s < 3; ++s) {
    auto idx = a.indices(s);
    CHECK(idx == b.indices(s));
    epoch0.insert(epoch0.end(), idx.begin(), idx.end());
  }
  CHECK(std::set<size_t>(epoch0.begin(), epoch0.end()).size() == 10);
  CHECK(a.permutation(0) != a.permutation(1));
  CHECK(a.permutation(0) != c.permutation(0));
  CHECK(a.indices(2).size() == 2);  // the last, partial batch
  BatchOrder dl(10, 4, true, true, 7);
  CHECK(dl.steps_per_epoch() == 2);
  std::vector<size_t> g{5, 6, 7, 8, 9};
  CHECK(rank_share(g, 0, 2) == std::vector<size_t>{5, 6, 7});
  CHECK(rank_share(g, 1, 2) == std::vector<size_t>{8, 9});
}

TEST_CASE("AdamW follows torch.optim.AdamW, schedules follow transformers", "[finetune][optim]") {
  torch::manual_seed(1);
  auto p = torch::randn({100});
  auto ref = p.clone();
  AdamWOptions o;
  o.weight_decay = 0.1;
  AdamW opt(100, o, torch::kCPU);
  auto m = torch::zeros({100}), v = torch::zeros({100});
  for (int step = 1; step <= 5; ++step) {
    auto g = torch::randn({100});
    double lr = 1e-2 * step;
    opt.step({AdamSegment{p, g, 0, true}}, lr);
    // torch.optim.AdamW (single tensor, 1.13): decay, moments, bias-corrected update.
    ref.mul_(1 - lr * o.weight_decay);
    m.mul_(o.beta1).add_(g, 1 - o.beta1);
    v.mul_(o.beta2).addcmul_(g, g, 1 - o.beta2);
    double bc1 = 1 - std::pow(o.beta1, step), bc2 = 1 - std::pow(o.beta2, step);
    ref.addcdiv_(m, (v.sqrt() / std::sqrt(bc2)).add_(o.eps), -lr / bc1);
  }
  CHECK((p - ref).abs().max().item<double>() < 1e-5);
  CHECK((opt.exp_avg() - m).abs().max().item<double>() < 1e-6);
  CHECK(opt.steps() == 5);

  LrSchedule lin{Schedule::Linear, 1.0, 10, 110, 0.0};
  CHECK(lin.at(0) == 0.0);  // transformers: the first warm-up step runs at 0
  CHECK(lin.at(5) == Approx(0.5));
  CHECK(lin.at(10) == Approx(1.0));
  CHECK(lin.at(60) == Approx(0.5));
  CHECK(lin.at(110) == Approx(0.0));
  LrSchedule cos{Schedule::Cosine, 2.0, 0, 100, 0.1};
  CHECK(cos.at(0) == Approx(2.0));
  CHECK(cos.at(50) == Approx(2.0 * (0.1 + 0.9 * 0.5)));
  CHECK(cos.at(100) == Approx(0.2));
  // Warm-up 10, the peak held to step 90, then a linear fall to 0.1 of it over the last 20.
  LrSchedule wsd{Schedule::Wsd, 2.0, 10, 110, 0.1, 20};
  CHECK(wsd.at(5) == Approx(1.0));
  CHECK(wsd.at(10) == Approx(2.0));
  CHECK(wsd.at(89) == Approx(2.0));
  CHECK(wsd.at(90) == Approx(2.0));
  CHECK(wsd.at(100) == Approx(2.0 * (0.1 + 0.9 * 0.5)));
  CHECK(wsd.at(109) == Approx(2.0 * (0.1 + 0.9 * 0.05)));
  CHECK(wsd.at(110) == Approx(0.2));
  // A fall longer than what follows the warm-up starts where the warm-up ends.
  LrSchedule steep{Schedule::Wsd, 1.0, 10, 20, 0.0, 50};
  CHECK(steep.at(10) == Approx(1.0));
  CHECK(steep.at(15) == Approx(0.9));
  CHECK(parse_schedule("wsd") == Schedule::Wsd);
  CHECK(std::string(schedule_name(Schedule::Wsd)) == "wsd");
}

namespace {
// transformers' get_scheduler factors (lr / peak) for steps 0..total (tests/reference/hf_peer.py).
std::vector<double> transformers_schedule(const LrSchedule& s) {
  TempDir tmp;
  const std::string cmd = reference_script("hf_peer.py") + " schedule --kind " + schedule_name(s.kind) +
                          " --warmup " + std::to_string(s.warmup) + " --total " + std::to_string(s.total) +
                          " --final-ratio " + std::to_string(s.final_ratio) + " --decay " + std::to_string(s.decay) +
                          " > '" + (tmp / "out").string() + "' 2>&1";
  if (std::system(cmd.c_str()) != 0) throw std::runtime_error("hf_peer.py schedule: " + read_text_file(tmp / "out"));
  return Json::parse(read_text_file(tmp / "out")).get<std::vector<double>>();
}
}  // namespace

TEST_CASE("every schedule gives transformers' learning rate at every step", "[finetune][optim][transformers]") {
  // transformers' WSD warms up from min_lr_ratio; emo's, like OLMo-core's (warmup_min_lr 0)
  // and every other schedule here, from 0: with a final ratio above 0 the two agree from the
  // end of the warm-up on.
  const std::vector<LrSchedule> schedules = {
      {Schedule::Linear, 1.0, 7, 40, 0.0},    {Schedule::Cosine, 1.0, 5, 40, 0.1}, {Schedule::Cosine, 1.0, 0, 33, 0.0},
      {Schedule::Constant, 1.0, 6, 20, 0.0},  {Schedule::Wsd, 1.0, 5, 40, 0.0, 8}, {Schedule::Wsd, 1.0, 4, 37, 0.1, 9},
      {Schedule::Wsd, 1.0, 0, 25, 0.0, 25}};
  for (const LrSchedule& s : schedules) {
    CAPTURE(schedule_name(s.kind), s.warmup, s.total, s.final_ratio, s.decay);
    const std::vector<double> peer = transformers_schedule(s);
    REQUIRE(peer.size() == size_t(s.total + 1));
    const int64_t from = s.kind == Schedule::Wsd && s.final_ratio > 0 ? s.warmup : 0;
    for (int64_t step = from; step <= s.total; ++step) {
      CAPTURE(step);
      CHECK(s.at(step) == Approx(peer[size_t(step)]).margin(1e-12));
    }
  }
}

TEST_CASE("freeze modes select tensors by role, shared experts are the last rows", "[finetune][freeze]") {
  ModelConfig c = ModelConfig::from_json(Json::parse(R"({"model_type": "emo", "vocab_size": 64, "hidden_size": 32,
    "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 4, "num_experts": 8,
    "num_experts_per_tok": 3, "num_shared_experts": 1, "pad_token_id": 1, "eos_token_id": 2})"), "test");
  ModelWeights w = init_weights(c, 0, {});
  auto plan = plan_freeze(w, c, find_train_mode("routed"), false);
  REQUIRE(plan.slices.size() == 4);  // gate_up and down of 2 layers
  for (const auto& s : plan.slices) {
    CHECK(s.role == Role::Expert);
    CHECK(s.row_begin == 0);
    CHECK(s.row_end == 7);
  }
  CHECK_FALSE(w.embed.requires_grad());
  CHECK(w.layers[0].gate_up.requires_grad());
  auto shared = plan_freeze(w, c, find_train_mode("routed_shared"), false);
  for (const auto& s : shared.slices) CHECK(s.whole());
  auto router = plan_freeze(w, c, find_train_mode("routed_shared_router"), false);
  CHECK(router.slices.size() == 6);
  auto non_moe = plan_freeze(w, c, find_train_mode("non_moe"), false);
  for (const auto& s : non_moe.slices) CHECK((s.role != Role::Expert && s.role != Role::Router));
  CHECK_FALSE(w.layers[1].router.requires_grad());
  auto all = plan_freeze(w, c, find_train_mode("all"), false);
  CHECK(all.trainable == all.total);
  for (const auto& s : all.slices) CHECK(s.decay == !(s.role == Role::Embedding || s.role == Role::AttnNorm ||
                                                      s.role == Role::MlpNorm || s.role == Role::FinalNorm));
  CHECK_THROWS_WITH(find_train_mode("experts"), Catch::Contains("routed_shared_router"));
}

TEST_CASE("freeze modes on Qwen2-MoE: its shared expert and shared_expert_gate count as shared, never as router",
          "[finetune][freeze][families]") {
  ModelConfig c = ModelConfig::from_json(Json::parse(R"({"model_type": "qwen2_moe", "vocab_size": 64, "hidden_size": 32,
    "intermediate_size": 24, "moe_intermediate_size": 16, "shared_expert_intermediate_size": 20, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_experts": 8, "num_experts_per_tok": 2, "mlp_only_layers": [1]})"), "test");
  ModelWeights w = init_weights(c, 0, {});
  // Role names (printable when a check fails), one per trained tensor, sorted.
  auto roles_of = [&](const TrainMode& mode) {
    std::multiset<std::string> roles;
    for (const auto& s : plan_freeze(w, c, mode, false).slices) roles.insert(role_name(s.role));
    return roles;
  };
  using Roles = std::multiset<std::string>;
  // One MoE layer (0) and one dense layer (1).
  CHECK(roles_of(find_train_mode("routed")) == Roles{"expert", "expert"});
  CHECK(roles_of(find_train_mode("routed_shared")) ==
        Roles{"expert", "expert", "shared_expert", "shared_expert", "shared_expert", "shared_expert_gate"});
  CHECK(roles_of(find_train_mode("routed_shared_router")).count("router") == 1);
  CHECK(roles_of(find_train_mode("routed_shared_router")).count("shared_expert_gate") == 1);
  auto non_moe = roles_of(find_train_mode("non_moe"));
  for (const char* r : {"expert", "router", "shared_expert", "shared_expert_gate"}) CHECK(non_moe.count(r) == 0);
  CHECK(non_moe.count("dense_mlp") == 3);  // the dense layer's MLP is not MoE
}
