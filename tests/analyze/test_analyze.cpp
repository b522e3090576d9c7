// emo analyze on models built so the answer is known.
//
// The constructed models: attention output and expert down-projections are zero, so the
// residual stream stays the token's embedding through every layer, and every router sees
// RMSNorm(embedding). Embeddings are 10 * a unit vector chosen per token; router rows are
// 5 on that direction for two chosen experts and 0 elsewhere. A token then puts
// probability 1/2 (to ~1e-12) on each of its two experts and chooses exactly them (the
// micro config routes top-2 routed + 1 shared).
//  - topic model: the direction is the token's domain (math 10-19, code 20-29,
//    legal 30-39), so each domain uses a fixed expert pair per layer.
//  - word-type model: the direction is the token's parity, whatever its domain.
#include <catch2/catch.hpp>

#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "analyze/analyze.h"
#include "analyze/analyze_request.h"
#include "cli_util.h"
#include "core/model/model_fixtures.h"
#include "core/util/error.h"

using namespace emo;
using namespace emo::test;

namespace {

const std::vector<std::string> kDomains = {"code", "legal", "math"};  // sorted, as load_corpus orders them
int64_t first_token(const std::string& domain) { return domain == "math" ? 10 : domain == "code" ? 20 : 30; }

// Experts per (layer, domain): layer 0 math {0,1}, code {2,3}, legal {1,4};
// layer 1 math {5,6}, code {0,1}, legal {6,2}.
std::map<std::string, std::vector<int64_t>> topic_experts(int layer) {
  if (layer == 0) return {{"math", {0, 1}}, {"code", {2, 3}}, {"legal", {1, 4}}};
  return {{"math", {5, 6}}, {"code", {0, 1}}, {"legal", {2, 6}}};
}

// The zeroed model: embeddings and routers are filled in by the caller.
std::pair<ModelConfig, ModelWeights> silent_model() {
  ModelConfig c = tiny_config();
  ModelWeights w = random_weights(c, 7);
  torch::NoGradGuard ng;
  w.embed.zero_();
  for (auto& l : w.layers) {
    l.o.zero_();
    l.down.zero_();
    l.attn_norm.fill_(1);
    l.mlp_norm.fill_(1);
    l.router.zero_();
  }
  return {c, std::move(w)};
}

Model topic_model() {
  auto [c, w] = silent_model();
  torch::NoGradGuard ng;
  for (size_t d = 0; d < 3; ++d) {
    const std::string& name = kDomains[d];
    for (int64_t t = first_token(name); t < first_token(name) + 10; ++t) w.embed[t][int64_t(d)] = 10;
    for (int l = 0; l < 2; ++l) {
      auto experts = topic_experts(l);
      for (int64_t e : experts[name]) w.layers[size_t(l)].router[e][int64_t(d)] = 5;
    }
  }
  return Model(c, std::move(w));
}

Model word_type_model() {
  auto [c, w] = silent_model();
  torch::NoGradGuard ng;
  for (int64_t t = 10; t < 40; ++t) w.embed[t][3 + t % 2] = 10;
  for (auto& l : w.layers) {
    for (int64_t e : {0, 1}) l.router[e][3] = 5;  // even tokens
    for (int64_t e : {2, 3}) l.router[e][4] = 5;  // odd tokens
  }
  return Model(c, std::move(w));
}

// Four documents per domain, of 6 to 12 tokens cycling through the domain's ten tokens
// (so every document has even and odd tokens), written as JSONL of space-separated ids.
fs::path write_corpus(const TempDir& dir) {
  fs::path path = dir / "corpus.jsonl";
  std::ofstream f(path);
  for (int i = 0; i < 4; ++i)
    for (const auto& domain : {"math", "code", "legal"}) {
      std::string text;
      for (int j = 0; j < 6 + 2 * i; ++j) text += (text.empty() ? "" : " ") + std::to_string(first_token(domain) + (i + j) % 10);
      f << Json{{"id", cat(domain, "-", i)}, {"topic", domain}, {"text", text}}.dump() << "\n";
    }
  return path;
}

std::vector<int32_t> encode_ids(const std::string& text) {
  std::vector<int32_t> ids;
  std::istringstream in(text);
  for (int32_t v; in >> v;) ids.push_back(v);
  return ids;
}

AnalyzeCorpus read_corpus(const TempDir& dir, const std::string& group_by = "domain") {
  CorpusSource s;
  s.path = write_corpus(dir).string();
  s.domain_field = "topic";
  s.group_by = group_by;
  return load_corpus(s, encode_ids, 512);
}

size_t index_of(const std::vector<std::string>& names, const std::string& name) {
  return size_t(std::find(names.begin(), names.end(), name) - names.begin());
}

}  // namespace

TEST_CASE("usage metrics: entropy, coverage, top experts, Jaccard, cosine", "[analyze]") {
  CHECK(entropy_bits({1, 1, 1, 1}) == Approx(2.0));
  CHECK(entropy_bits({0.5, 0.5, 0, 0}) == Approx(1.0));
  CHECK(entropy_bits({3, 0, 0}) == Approx(0.0));
  CHECK(experts_covering({0.5, 0.3, 0.2}, 0.5) == 1);
  CHECK(experts_covering({0.2, 0.5, 0.3}, 0.9) == 3);
  CHECK(experts_covering({0.2, 0.5, 0.3}, 0.8) == 2);
  CHECK(experts_covering({0.5, 0.5}, 0.5) == 1);
  CHECK(top_experts({0.1, 0.4, 0.4, 0.1}, 0.25) == std::vector<int64_t>{1});
  CHECK(top_experts({0.1, 0.2, 0.4, 0.3, 0.0, 0.0, 0.0}, 0.25) == std::vector<int64_t>{2, 3});
  CHECK(jaccard({0, 1}, {1, 4}) == Approx(1.0 / 3));
  CHECK(jaccard({0, 1}, {2, 3}) == 0.0);
  CHECK(cosine({1, 0}, {0, 1}) == 0.0);
  CHECK(cosine({0.5, 0.5, 0}, {0, 0.5, 0.5}) == Approx(0.5));
  CHECK(correlation({1, 2, 3}, {2, 4, 6}) == Approx(1.0));
  CHECK(correlation({1, 2, 3}, {3, 2, 1}) == Approx(-1.0));
  CHECK(correlation({1, 1, 1}, {3, 2, 1}) == 0.0);
}

TEST_CASE("NMI is 1 for identical labelings and 0 for independent ones", "[analyze]") {
  CHECK(normalized_mutual_information({{5, 0}, {0, 7}}) == Approx(1.0));
  CHECK(normalized_mutual_information({{3, 3}, {3, 3}}) == Approx(0.0).margin(1e-12));
  double partial = normalized_mutual_information({{4, 1}, {1, 4}});
  CHECK(partial > 0.1);
  CHECK(partial < 0.9);
}

TEST_CASE("k-means finds three separated blobs whatever the seed", "[analyze]") {
  auto gen = at::detail::createCPUGenerator(3);
  std::vector<torch::Tensor> parts;
  for (int b = 0; b < 3; ++b) parts.push_back(at::randn({20, 4}, gen) * 0.1 + 5.0 * b);
  auto x = torch::cat(parts, 0);
  for (uint64_t seed : {0u, 1u, 2u}) {
    KMeansResult r = kmeans(x, 3, seed, 100);
    std::set<int64_t> labels;
    for (int b = 0; b < 3; ++b) {
      auto blob = r.assignment.narrow(0, 20 * b, 20);
      CHECK(blob.eq(blob[0]).all().item<bool>());
      labels.insert(blob[0].item<int64_t>());
    }
    CHECK(labels.size() == 3);
    CHECK(r.inertia < 60 * 4 * 0.1 * 0.1 * 3);  // about the blobs' own variance
  }
  CHECK_THROWS_AS(kmeans(x, 61, 0, 10), Error);
}

TEST_CASE("load_corpus reads the domain field, sorts domains, groups by document", "[analyze]") {
  TempDir dir;
  AnalyzeCorpus c = read_corpus(dir);
  CHECK(c.domain_names == kDomains);
  CHECK(c.group_names == kDomains);
  REQUIRE(c.ids.size() == 12);
  CHECK(c.tokens == 3 * (6 + 8 + 10 + 12));
  CHECK(c.doc_ids[0] == "math-0");
  CHECK(c.domain[0] == int(index_of(kDomains, "math")));
  CHECK(c.ids[0] == std::vector<int64_t>{10, 11, 12, 13, 14, 15});
  AnalyzeCorpus per_doc = read_corpus(dir, "document");
  CHECK(per_doc.group_names.size() == 12);
  CHECK(per_doc.group_names[1] == "code-0");

  CorpusSource bad;
  bad.path = (dir / "bad.jsonl").string();
  std::ofstream(bad.path) << R"({"text": "1 2", "domain": "a"})" << "\n" << R"({"text": "3"})" << "\n";
  try {
    load_corpus(bad, encode_ids, 512);
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.file() == bad.path);
    CHECK(e.field() == "line 2.domain");
  }
}

TEST_CASE("topic model: usage, concentration and overlap come out as constructed", "[analyze]") {
  TempDir dir;
  AnalyzeCorpus corpus = read_corpus(dir);
  Model model = topic_model();
  AnalyzeOptions o;
  o.batch = 5;  // batches mix domains and lengths
  CorpusAnalysis a = analyze_corpus(model, corpus, o);
  const UsageReport& u = a.usage;
  REQUIRE(u.layers == std::vector<int>{0, 1});
  REQUIRE(u.routed == std::vector<int64_t>{7, 7});
  REQUIRE(u.groups == kDomains);
  for (size_t g = 0; g < 3; ++g) {
    CHECK(u.group_tokens[g] == 36);
    CHECK(u.group_docs[g] == 4);
    for (int l = 0; l < 2; ++l) {
      const GroupLayerUsage& gl = u.usage[g][size_t(l)];
      std::vector<int64_t> mine = topic_experts(l)[kDomains[g]];
      for (int64_t e = 0; e < 7; ++e) {
        bool chosen = std::count(mine.begin(), mine.end(), e) > 0;
        CHECK(gl.mean_prob[size_t(e)] == Approx(chosen ? 0.5 : 0.0).margin(1e-6));
        CHECK(gl.topk_freq[size_t(e)] == (chosen ? 1.0 : 0.0));
      }
      CHECK(gl.shared_mean_prob == std::vector<double>{1.0});
      CHECK(gl.entropy_bits == Approx(1.0).margin(1e-6));
      CHECK(gl.experts_50 == 1);
      CHECK(gl.experts_90 == 2);
    }
  }
  REQUIRE(u.overlap.size() == 2);
  size_t math = index_of(kDomains, "math"), code = index_of(kDomains, "code"), legal = index_of(kDomains, "legal");
  // Layer 0: math {0,1} and legal {1,4} share one expert of three; code {2,3} none.
  const LayerOverlap& l0 = u.overlap[0];
  CHECK(l0.top_experts[math] == std::vector<int64_t>{0, 1});
  CHECK(l0.jaccard[math][legal] == Approx(1.0 / 3));
  CHECK(l0.jaccard[math][code] == 0.0);
  CHECK(l0.jaccard[math][math] == 1.0);
  CHECK(l0.cosine[math][legal] == Approx(0.5).margin(1e-6));
  CHECK(l0.cosine[code][legal] == Approx(0.0).margin(1e-6));
  // Centred on 1/7: two shared-nothing pairs correlate at -0.4, one shared expert gives 0.3.
  CHECK(l0.correlation[math][code] == Approx(-0.4).margin(1e-6));
  CHECK(l0.correlation[math][legal] == Approx(0.3).margin(1e-6));
  // Layer 1: math {5,6} and legal {2,6} overlap; code {0,1} is apart.
  const LayerOverlap& l1 = u.overlap[1];
  CHECK(l1.jaccard[math][legal] == Approx(1.0 / 3));
  CHECK(l1.jaccard[code][legal] == 0.0);
  Json s = u.summary();
  CHECK(s["mean_entropy_bits"].get<double>() == Approx(1.0).margin(1e-6));
  CHECK(s["mean_jaccard"].get<double>() == Approx(1.0 / 9));  // per layer: (1/3 + 0 + 0) / 3
  CHECK(s["mean_cosine"].get<double>() == Approx(0.5 / 3).margin(1e-6));
  CHECK_FALSE(a.clusters.has_value());
}

TEST_CASE("topic model: token clusters are the domains and keep documents together", "[analyze]") {
  TempDir dir;
  AnalyzeCorpus corpus = read_corpus(dir);
  Model model = topic_model();
  AnalyzeOptions o;
  o.clusters.k = 3;
  o.clusters.min_doc_tokens = 1;
  o.token_text = [](int64_t id) { return cat("t", id); };
  CorpusAnalysis a = analyze_corpus(model, corpus, o);
  REQUIRE(a.clusters);
  const ClusterReport& c = *a.clusters;
  CHECK(c.seen == corpus.tokens);
  CHECK(c.sampled == corpus.tokens);
  CHECK(c.domain_purity == 1.0);
  CHECK(c.nmi == Approx(1.0));
  CHECK(c.docs_counted == 12);
  CHECK(c.mean_clusters_per_doc == 1.0);
  CHECK(c.mean_dominant_share == 1.0);
  std::set<size_t> main_domains;
  for (const auto& cl : c.clusters) {
    CHECK(cl.size == 36);
    CHECK(cl.purity == 1.0);
    size_t d = size_t(std::max_element(cl.domain_counts.begin(), cl.domain_counts.end()) - cl.domain_counts.begin());
    main_domains.insert(d);
    REQUIRE(cl.top_tokens.size() == 10);
    for (const auto& t : cl.top_tokens) {
      CHECK(t.id >= first_token(kDomains[d]));
      CHECK(t.id < first_token(kDomains[d]) + 10);
      CHECK(t.text == cat("t", t.id));
    }
  }
  CHECK(main_domains.size() == 3);
}

TEST_CASE("word-type model: domains overlap fully and clusters split documents", "[analyze]") {
  TempDir dir;
  AnalyzeCorpus corpus = read_corpus(dir);
  Model model = word_type_model();
  AnalyzeOptions o;
  o.clusters.k = 2;
  o.clusters.min_doc_tokens = 1;
  CorpusAnalysis a = analyze_corpus(model, corpus, o);
  for (const auto& ov : a.usage.overlap)
    for (size_t i = 0; i < 3; ++i)
      for (size_t j = 0; j < 3; ++j) {
        CHECK(ov.jaccard[i][j] == 1.0);
        CHECK(ov.cosine[i][j] == Approx(1.0).margin(1e-3));
        CHECK(ov.correlation[i][j] == Approx(1.0).margin(1e-3));
      }
  const ClusterReport& c = *a.clusters;
  CHECK(c.nmi < 0.05);
  CHECK(c.mean_clusters_per_doc == 2.0);  // every document has even and odd tokens
  CHECK(c.mean_dominant_share == Approx(0.5).margin(0.1));
  for (const auto& cl : c.clusters) {
    int64_t parity = cl.top_tokens.at(0).id % 2;
    for (const auto& t : cl.top_tokens) CHECK(t.id % 2 == parity);
  }
}

TEST_CASE("the fingerprint sample is capped, seeded and reproducible", "[analyze]") {
  TempDir dir;
  AnalyzeCorpus corpus = read_corpus(dir);
  Model model = topic_model();
  AnalyzeOptions o;
  o.clusters.k = 3;
  o.clusters.cap = 30;
  o.clusters.seed = 11;
  o.clusters.fingerprint_layer = 1;
  CorpusAnalysis a = analyze_corpus(model, corpus, o), b = analyze_corpus(model, corpus, o);
  CHECK(a.clusters->seen == corpus.tokens);
  CHECK(a.clusters->sampled == 30);
  int64_t total = 0;
  for (size_t k = 0; k < 3; ++k) {
    total += a.clusters->clusters[k].size;
    CHECK(a.clusters->clusters[k].size == b.clusters->clusters[k].size);
    CHECK(a.clusters->clusters[k].domain_counts == b.clusters->clusters[k].domain_counts);
  }
  CHECK(total == 30);
  o.clusters.fingerprint_layer = 5;
  CHECK_THROWS_AS(analyze_corpus(model, corpus, o), Error);
}

TEST_CASE("per-document usage has a group per document", "[analyze]") {
  TempDir dir;
  AnalyzeCorpus corpus = read_corpus(dir, "document");
  Model model = topic_model();
  CorpusAnalysis a = analyze_corpus(model, corpus, {});
  REQUIRE(a.usage.groups.size() == 12);
  size_t code1 = index_of(a.usage.groups, "code-1");
  CHECK(a.usage.group_tokens[code1] == 8);
  CHECK(a.usage.usage[code1][0].topk_freq[2] == 1.0);
  CHECK(a.usage.usage[code1][0].topk_freq[0] == 0.0);
}

TEST_CASE("prompt: the experts an input uses and the modules covering them", "[analyze]") {
  Model model = topic_model();
  ModuleFile math{"math", "math.json", ExpertSelection::from_json(Json::parse(R"({"0": [0, 1], "1": [5, 6]})"), "math.json")};
  ModuleFile code{"code", "code.json", ExpertSelection::from_json(Json::parse(R"({"0": [2, 3]})"), "code.json")};
  // Three math tokens, then one code token.
  PromptAnalysis a = analyze_prompt(model, {10, 11, 12, 20}, {math, code});
  REQUIRE(a.layers.size() == 2);
  CHECK(a.layers[0].used == std::vector<int64_t>{0, 1, 2, 3});
  CHECK(a.layers[0].token_experts[0] == std::vector<int64_t>{0, 1});
  CHECK(a.layers[0].token_experts[3] == std::vector<int64_t>{2, 3});
  CHECK(a.layers[0].topk_freq[0] == 0.75);
  CHECK(a.layers[1].used == std::vector<int64_t>{5, 6, 0, 1});
  REQUIRE(a.modules.size() == 2);
  CHECK(a.modules[0].per_layer == std::vector<double>{0.75, 0.75});
  CHECK(a.modules[0].missing[0] == std::vector<int64_t>{2, 3});
  CHECK_FALSE(a.modules[0].covers_all);
  CHECK(a.modules[1].per_layer == std::vector<double>{0.25, 1.0});  // layer 1 not restricted: all kept
  PromptAnalysis only_math = analyze_prompt(model, {10, 11}, {math});
  CHECK(only_math.modules[0].covers_all);
  CHECK(only_math.modules[0].mean == 1.0);
}

TEST_CASE("the HTML report is self-contained and its cells carry the numbers", "[analyze]") {
  TempDir dir;
  AnalyzeCorpus corpus = read_corpus(dir);
  Model model = topic_model();
  AnalyzeOptions o;
  o.clusters.k = 3;
  CorpusAnalysis a = analyze_corpus(model, corpus, o);
  std::string html = render_corpus_report(a, {{"model", "topic <model>"}});
  CHECK(html.find("<script") == std::string::npos);
  CHECK(html.find("href=") == std::string::npos);
  CHECK(html.find("src=") == std::string::npos);
  CHECK(html.find("topic &lt;model&gt;") != std::string::npos);
  // One usage cell per (layer, routed expert) for each domain, with the exact value.
  std::regex cell(R"re(<rect class="cell" data-map="usage:math" data-row="layer (\d)" data-col="(\d+)" data-v="([^"]+)")re");
  int cells = 0;
  size_t math = index_of(kDomains, "math");
  for (auto it = std::sregex_iterator(html.begin(), html.end(), cell); it != std::sregex_iterator(); ++it, ++cells) {
    int layer = std::stoi((*it)[1]), expert = std::stoi((*it)[2]);
    CHECK(std::stod((*it)[3]) == a.usage.usage[math][size_t(layer)].mean_prob[size_t(expert)]);
  }
  CHECK(cells == 2 * 7);
  CHECK(html.find("data-map=\"jaccard:0\"") != std::string::npos);
  CHECK(html.find("data-map=\"cluster-domains\"") != std::string::npos);
  std::string prompt = render_prompt_report(analyze_prompt(model, {10, 20}, {}), {});
  CHECK(prompt.find("data-map=\"prompt-usage\"") != std::string::npos);
  CHECK(prompt.find("<script") == std::string::npos);
}

TEST_CASE("emo analyze usage, clusters and prompt on a micro checkpoint", "[analyze][cli]") {
  TempDir dir;
  std::string model = (dir / "micro").string();
  REQUIRE(run_emo("init --preset micro --seed 3 --out " + model).code == 0);
  fs::path data = dir / "docs.jsonl";
  {
    std::ofstream f(data);
    for (int i = 0; i < 3; ++i) {
      f << Json{{"id", cat("m", i)}, {"domain", "math"}, {"text", "The sum of 2 and 3 is 5, so x = 5."}}.dump() << "\n";
      f << Json{{"id", cat("c", i)}, {"domain", "code"}, {"text", "def add(a, b):\n    return a + b\n"}}.dump() << "\n";
    }
  }
  std::string out = (dir / "usage").string();
  RunResult r = run_emo("analyze usage --model " + model + " --data " + data.string() + " --out " + out + " --json");
  REQUIRE(r.code == 0);
  Json s = Json::parse(r.out);
  CHECK(s["usage"]["groups"].size() == 2);
  Json j = Json::parse(read_text_file(fs::path(out) / "analysis.json"));
  CHECK(j["analysis"]["usage"]["groups"][0]["name"] == "code");
  CHECK(j["analysis"]["documents"] == 6);
  CHECK(read_text_file(fs::path(out) / "report.html").find("</html>") != std::string::npos);

  // An existing --out is refused without --force; clusters writes the same files.
  CHECK(run_emo("analyze usage --model " + model + " --data " + data.string() + " --out " + out).code != 0);
  r = run_emo("analyze clusters --model " + model + " --data " + data.string() + " --k 3 --out " + out + " --force");
  REQUIRE(r.code == 0);
  j = Json::parse(read_text_file(fs::path(out) / "analysis.json"));
  CHECK(j["analysis"]["clusters"]["k"] == 3);

  // Bad input: one line naming the file and field, no output directory.
  fs::path bad = dir / "bad.jsonl";
  std::ofstream(bad) << R"({"text": "hello"})" << "\n";
  r = run_emo("analyze usage --model " + model + " --data " + bad.string() + " --out " + (dir / "none").string());
  CHECK(r.code != 0);
  CHECK(r.err.find(bad.string() + ": line 1.domain") != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "none"));

  r = run_emo("analyze prompt --model " + model + " --text 'def add(a, b):' --json");
  REQUIRE(r.code == 0);
  Json p = Json::parse(r.out);
  CHECK(p["analysis"]["layers"].size() == 2);
  CHECK(p["analysis"]["tokens"].size() == p["analysis"]["ids"].size());
}

TEST_CASE("analyze requests from their fields: usage and clusters share the corpus rows", "[analyze][bad-input]") {
  const auto& usage = analyze_usage_request_spec();
  const auto& clusters = analyze_clusters_request_spec();
  AnalyzeRequest r = build_request(clusters, {{"model", {"m"}}, {"data", {"c.jsonl"}}, {"per-domain", {"40"}},
                                              {"group-by", {"document"}}, {"k", {"8"}}, {"fingerprint-layer", {"1"}},
                                              {"seed", {"3"}}, {"out", {"o"}}});
  CHECK(r.source.path == "c.jsonl");
  CHECK(r.source.per_domain == 40);
  CHECK(r.source.group_by == "document");
  CHECK(r.clusters.k == 8);
  CHECK(r.clusters.fingerprint_layer == 1);
  CHECK(r.clusters.seed == 3);
  CHECK(build_request(usage, {{"model", {"m"}}}).clusters.k == 0);  // usage never clusters
  CHECK(usage.fields.size() + 5 == clusters.fields.size());
  CHECK_THROWS_WITH(build_request(usage, {{"k", {"8"}}}), Catch::Contains("--k"));  // not a usage setting
  CHECK_THAT(field_spec(clusters.fields, "k").check("0"), Catch::Contains("positive"));
  CHECK(field_spec(usage.fields, "data").input_path);
  CHECK_FALSE(field_spec(usage.fields, "force").recipe_setting);
}
