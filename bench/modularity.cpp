// bench/modularity: does EMO's document-pool pretraining make modules? One command:
//
//   bench_modularity [--out DIR] [--results DIR] [--steps 300] [--batch 32] [--seq-len 256]
//                    [--eval-docs N] [--seed 0] [--threads N] [--train FILE] [--valid FILE]
//
// 1. Pretrains two MoEs of tiny's shape (4 layers, hidden 128, 4 heads, 31 routed + 1 shared
//    experts, top-3 routed, expert FFN 64, vocabulary 8002) on the corpus train split with
//    the same initial weights, data order, tokens and seed: one with the EMO router
//    (document pools), one with the standard router (emo pretrain's library, the finetune
//    trainer). An existing OUT/models/<router> is reused (a killed run resumes).
// 2. Per domain, ONE valid document of the domain (its first of >= 128 tokens) is routed
//    (surgery's route_examples), router-prob keeps 25% and 12.5% of the experts per layer
//    (8 and 4 of 32: 7 and 3 routed + the shared one), and surgery's extract writes the
//    module; a random module of the same size is extracted too.
// 3. Perplexity (eval's evaluate_perplexity, 256-token windows, per token routing) on the
//    domain's valid documents except the chosen one: full model, module, random module.
// 4. Writes RESULTS/modularity.json and RESULTS/modularity.md: per domain and budget each
//    model's perplexity and relative increase over the full model, EMO and standard side by
//    side, and how much the domains' top-25% expert sets overlap (Jaccard, per layer).
#include <cmath>
#include <cstring>
#include <map>
#include <set>

#include "bench/bench_util.h"
#include "core/checkpoint/content_hash.h"
#include "core/io/json.h"
#include "core/io/sha256.h"
#include "core/model/runtime.h"
#include "core/text/dataset.h"
#include "eval/perplexity.h"
#include "pretrain/pretrain.h"
#include "surgery/extract.h"
#include "surgery/module.h"

using namespace emo;
using namespace emo::bench;

namespace {

struct Args {
  fs::path out = "/tmp/emo-modularity", results;
  int64_t steps = 300, batch = 32, seq_len = 256, eval_docs = 0;
  uint64_t seed = 0;
  int threads = 0;
  std::string train, valid;
};

const std::vector<double> kBudgets = {0.25, 0.125};
const char* const kRouters[] = {"emo", "standard"};

fs::path corpus_file(const std::string& name) {
  fs::path here = fs::path(::emo::build_source_dir()) / "data/corpus" / name;
  if (fs::exists(here)) return here;
  return fs::path(::emo::build_source_dir()) / "../shared/data/corpus" / name;
}

Args parse(int argc, char** argv) {
  Args a;
  bench::check_flag_pairs(argc, argv,
                          "bench_modularity [--out DIR] [--results DIR] [--steps 300] [--batch 32] [--seq-len 256] "
                          "[--eval-docs N] [--seed 0] [--threads N] [--train FILE] [--valid FILE]");
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--out") a.out = v;
    else if (k == "--results") a.results = v;
    else if (k == "--steps") a.steps = std::atoll(v.c_str());
    else if (k == "--batch") a.batch = std::atoll(v.c_str());
    else if (k == "--seq-len") a.seq_len = std::atoll(v.c_str());
    else if (k == "--eval-docs") a.eval_docs = std::atoll(v.c_str());
    else if (k == "--seed") a.seed = std::strtoull(v.c_str(), nullptr, 10);
    else if (k == "--threads") a.threads = std::atoi(v.c_str());
    else if (k == "--train") a.train = v;
    else if (k == "--valid") a.valid = v;
    else {
      std::fprintf(stderr, "bench_modularity: unknown flag %s\n", k.c_str());
      std::exit(2);
    }
  }
  if (a.results.empty()) a.results = a.out;
  if (a.train.empty()) a.train = corpus_file("train.jsonl.gz").string();
  if (a.valid.empty()) a.valid = corpus_file("valid.jsonl.gz").string();
  return a;
}

// Step 1: one pretraining run through the library `emo pretrain` uses.
Json pretrain_model(const Args& a, const std::string& router, const fs::path& dir) {
  if (fs::exists(dir / "config.json")) {
    std::printf("[%s] reusing %s\n", router.c_str(), dir.c_str());
    Json s = load_json_file((dir / "train_summary.json").string());
    s["reused"] = true;
    // The bench always trains with the default pool range, a function of the config.
    if (router == "emo") {
      PoolRange pool = default_pool_range(Checkpoint::open(dir).config());
      s["pool"] = {pool.min, pool.max};
    }
    return s;
  }
  PretrainOptions p;
  p.preset = "tiny";
  p.init_seed = a.seed;
  p.tokenizer_dir = fs::path(::emo::build_source_dir()) / "data/tokenizers/dolma2-8k";
  p.data = a.train;
  p.corpus.seq_len = a.seq_len;
  p.corpus.cache_dir = default_cache_dir();
  p.router = parse_router_kind(router);
  p.train.out = dir;
  p.train.batch_size = a.batch;
  p.train.max_steps = a.steps;
  p.train.seed = a.seed;
  p.train.save_every = std::max<int64_t>(1, a.steps / 6);
  p.train.keep_last = 1;
  p.train.resume = fs::exists(dir / "checkpoints");
  p.argv = {"bench_modularity"};
  std::printf("[%s] pretraining %lld steps x %lld x %lld tokens -> %s\n", router.c_str(), (long long)a.steps,
              (long long)a.batch, (long long)a.seq_len, dir.c_str());
  std::fflush(stdout);
  PretrainResult r = pretrain(p);
  Json s = r.train.summary;
  if (p.router == RouterKind::Emo) s["pool"] = {r.pool.min, r.pool.max};
  std::printf("[%s] done: %.0f s, %.0f tokens/s, final loss %.4f\n", router.c_str(), r.train.seconds,
              s["tokens_per_second"].get<double>(), r.train.final_loss);
  return s;
}

struct DomainDocs {
  std::string name;
  TextDoc example;             // the one document modules are chosen from
  std::vector<TextDoc> eval;   // the others
};

// The domain's first valid document of >= 128 tokens (else its longest) picks the module;
// the rest (at most eval_docs, 0 = all) are what every model is scored on.
std::vector<DomainDocs> split_domains(const Args& a, const Tokenizer& tok) {
  TextDocs all = load_text_docs(a.valid);
  std::map<std::string, std::vector<TextDoc>> by;
  for (auto& d : all.docs) by[d.domain].push_back(d);
  std::vector<DomainDocs> out;
  for (auto& [name, docs] : by) {
    size_t pick = 0, longest = 0, best = 0;
    bool found = false;
    for (size_t i = 0; i < docs.size() && !found; ++i) {
      size_t n = tok.encode(docs[i].text).size();
      if (n >= 128) pick = i, found = true;
      if (n > longest) longest = n, best = i;
    }
    if (!found) pick = best;
    DomainDocs dd;
    dd.name = name;
    dd.example = docs[pick];
    for (size_t i = 0; i < docs.size(); ++i)
      if (i != pick && (a.eval_docs <= 0 || int64_t(dd.eval.size()) < a.eval_docs)) dd.eval.push_back(docs[i]);
    out.push_back(dd);
  }
  return out;
}

double ppl_of(Model& model, const Tokenizer& tok, const std::vector<TextDoc>& docs, const std::string& domain) {
  PplOptions po;
  po.window = 256;
  po.batch = 16;
  PplResult r = evaluate_perplexity(model, tok, docs, po);
  return r.by_domain.at(domain).perplexity();
}

// Steps 2-3 for one module: choose (router-prob on the example's statistics, or random),
// extract with surgery, load, score, delete.
struct ModuleScore {
  double ppl = 0;
  ExpertSelection selection;
  int64_t routed_kept = 0;
};

ModuleScore score_module(const Checkpoint& parent, const std::string& parent_hash, const RouteStats& stats,
                         const std::string& method, double fraction, uint64_t seed, const DomainDocs& d,
                         const fs::path& scratch) {
  ModuleRequest req;
  req.method = method;
  req.budget.keep_fraction = fraction;
  req.seed = seed;
  SelectionSources src;
  src.stats = &stats;
  ModuleChoice choice = choose_module(parent.config(), req, src);
  ExtractPlan plan = plan_extract(parent, choice.selection, parent_hash);
  fs::remove_all(scratch);
  {
    AtomicDir dir(scratch, true);
    write_extract(parent, plan, dir.path());
    dir.commit();
  }
  Checkpoint ck = Checkpoint::open(scratch);
  LoadOptions lo;
  lo.dtype = torch::kFloat32;
  Model module = Model::load(ck, lo);
  Tokenizer tok = Tokenizer::load((scratch / "tokenizer.json").string());
  ModuleScore s;
  s.ppl = ppl_of(module, tok, d.eval, d.name);
  s.selection = choice.selection;
  s.routed_kept = int64_t(choice.selection.kept.begin()->second.size());
  fs::remove_all(scratch);
  return s;
}

double jaccard(const std::vector<int64_t>& a, const std::vector<int64_t>& b) {
  std::set<int64_t> A(a.begin(), a.end()), B(b.begin(), b.end()), U = A;
  U.insert(B.begin(), B.end());
  size_t inter = 0;
  for (auto x : A) inter += B.count(x);
  return U.empty() ? 0.0 : double(inter) / double(U.size());
}

// Mean over MoE layers of the Jaccard index of two selections.
double mean_jaccard(const ExpertSelection& a, const ExpertSelection& b) {
  double sum = 0;
  int n = 0;
  for (const auto& [layer, kept] : a.kept) {
    auto it = b.kept.find(layer);
    if (it == b.kept.end()) continue;
    sum += jaccard(kept, it->second), ++n;
  }
  return n ? sum / n : 0.0;
}

std::string pct(double x) {
  char b[32];
  std::snprintf(b, sizeof b, "%+.1f%%", 100 * x);
  return b;
}

std::string num(double x, int prec = 1) {
  char b[32];
  std::snprintf(b, sizeof b, "%.*f", prec, x);
  return b;
}

std::string budget_name(double f) { return f == 0.25 ? "25%" : f == 0.125 ? "12.5%" : num(100 * f) + "%"; }

std::string markdown(const Json& j) {
  std::string md = "# Modularity: EMO vs standard MoE pretraining\n\n";
  md += "Written by `build/bench/bench_modularity` (bench/modularity.cpp); the numbers are in `modularity.json`.\n\n";
  const Json& s = j["setup"];
  md += "Shape: " + s["shape"].get<std::string>() + ". Training: " + std::to_string(s["steps"].get<int64_t>()) +
        " steps x " + std::to_string(s["batch"].get<int64_t>()) + " sequences x " +
        std::to_string(s["seq_len"].get<int64_t>()) + " tokens (" + num(s["tokens"].get<double>() / 1e6, 2) +
        "M tokens) of the corpus train split, seed " + std::to_string(s["seed"].get<uint64_t>()) +
        ", same initial weights and data order for both; EMO pools " + s["pool"].dump() +
        " routed experts per document and layer. Modules: router-prob on ONE valid document per domain, "
        "extracted with surgery's extract; random modules of the same size. Perplexity: 256-token windows over the "
        "domain's other valid documents, routing per token.\n\n";
  md += "| model | wall time | tokens/s | final train loss |\n| --- | --- | --- | --- |\n";
  for (const char* r : kRouters) {
    const Json& t = j["training"][r];
    md += std::string("| ") + r + " | " + num(t["seconds"].get<double>(), 0) + " s | " +
          num(t["tokens_per_second"].get<double>(), 0) + " | " + num(t["final"]["ce_loss"].get<double>(), 3) + " |\n";
  }
  md += "\n## Mean over the domains\n\n| | EMO | standard | reference EMO | reference standard |\n"
        "| --- | --- | --- | --- | --- |\n";
  const Json& m = j["mean"];
  md += "| full-model perplexity | " + num(m["emo"]["full_ppl"].get<double>()) + " | " +
        num(m["standard"]["full_ppl"].get<double>()) + " | ~95 | ~100 |\n";
  const std::map<std::string, std::pair<std::string, std::string>> ref = {
      {"module 25%", {"+4%", "+50%"}}, {"module 12.5%", {"+14%", "+125%"}},
      {"random 25%", {"+50%", "+105%"}}, {"random 12.5%", {"+105%", "+171%"}}};
  for (const char* v : {"module", "random"})
    for (double b : kBudgets) {
      std::string key = std::string(v) + " " + budget_name(b);
      md += "| " + key + " (relative ppl increase) | " + pct(m["emo"][key].get<double>()) + " | " +
            pct(m["standard"][key].get<double>()) + " | " + ref.at(key).first + " | " + ref.at(key).second + " |\n";
    }
  md += "| domain overlap of top-25% experts (mean Jaccard over domain pairs and layers) | " +
        num(m["emo"]["jaccard"].get<double>(), 3) + " | " + num(m["standard"]["jaccard"].get<double>(), 3) +
        " | | |\n\n";
  md += "Reference figures: plain PyTorch, the same shape (the issue's numbers).\n\n## Per domain\n\n";
  md += "| domain | budget | EMO full | EMO module | EMO random | standard full | standard module | standard random |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- |\n";
  for (const auto& d : j["domains"]) {
    for (double b : kBudgets) {
      std::string bn = budget_name(b);
      md += "| " + d["domain"].get<std::string>() + " | " + bn;
      for (const char* r : kRouters) {
        const Json& x = d[r];
        double full = x["full_ppl"].get<double>();
        const Json& mb = x["budgets"][bn];
        md += " | " + num(full) + " | " + num(mb["module_ppl"].get<double>()) + " (" +
              pct(mb["module_ppl"].get<double>() / full - 1) + ") | " + num(mb["random_ppl"].get<double>()) + " (" +
              pct(mb["random_ppl"].get<double>() / full - 1) + ")";
      }
      md += " |\n";
    }
  }
  md += "\n## Domain overlap (top-25% experts, Jaccard averaged over layers)\n\n";
  for (const char* r : kRouters) {
    md += std::string("**") + r + "**\n\n| |";
    const Json& jm = j["jaccard"][r];
    std::vector<std::string> names;
    for (auto it = jm.begin(); it != jm.end(); ++it) names.push_back(it.key());
    for (const auto& n : names) md += " " + n + " |";
    md += "\n|---|";
    for (size_t i = 0; i < names.size(); ++i) md += "---|";
    md += "\n";
    for (const auto& a : names) {
      md += "| " + a + " |";
      for (const auto& b : names) md += " " + num(jm[a][b].get<double>(), 2) + " |";
      md += "\n";
    }
    md += "\n";
  }
  return md;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    Args a = parse(argc, argv);
    configure_threads(a.threads);
    fs::create_directories(a.out);
    fs::create_directories(a.results);
    Json result = {{"setup",
                    {{"shape", "tiny preset: 4 layers, hidden 128, 4 heads, 31 routed + 1 shared experts, top-3 routed "
                               "(top-4 with the shared one), expert FFN 64, vocabulary 8002"},
                     {"steps", a.steps},
                     {"batch", a.batch},
                     {"seq_len", a.seq_len},
                     {"tokens", double(a.steps * a.batch * a.seq_len)},
                     {"seed", a.seed},
                     {"threads", at::get_num_threads()},
                     {"train", a.train},
                     {"valid", a.valid},
                     {"selection", "router-prob on one valid document per domain (first of >= 128 tokens)"},
                     {"budgets", kBudgets},
                     {"window", 256}}}};

    // 1. the two models.
    for (const char* r : kRouters) {
      double secs = seconds_of([&] { result["training"][r] = pretrain_model(a, r, a.out / "models" / r); });
      result["training"][r]["wall_seconds_this_run"] = secs;
      if (result["training"][r].contains("pool")) result["setup"]["pool"] = result["training"][r]["pool"];
    }
    if (!result["setup"].contains("pool")) result["setup"]["pool"] = "see OUT/models/emo/provenance.yaml";

    // 2-3. modules and perplexities.
    Tokenizer tok = Tokenizer::load((a.out / "models" / "emo" / "tokenizer.json").string());
    std::vector<DomainDocs> domains = split_domains(a, tok);
    std::map<std::string, std::map<std::string, ExpertSelection>> top25;  // router -> domain -> selection
    Json per_domain = Json::array();
    for (auto& d : domains) per_domain.push_back({{"domain", d.name}, {"example_id", d.example.id}, {"eval_docs", d.eval.size()}});
    double eval_secs = seconds_of([&] {
      for (const char* r : kRouters) {
        fs::path dir = a.out / "models" / r;
        Checkpoint ck = Checkpoint::open(dir);
        std::string hash = parent_content_hash(ck, false);
        LoadOptions lo;
        lo.dtype = torch::kFloat32;
        Model model = Model::load(ck, lo);
        for (size_t i = 0; i < domains.size(); ++i) {
          const DomainDocs& d = domains[i];
          Json& out = per_domain[i][r];
          out["full_ppl"] = ppl_of(model, tok, d.eval, d.name);
          Examples ex;
          ex.texts = {d.example.text};
          ex.format = "text";
          ex.file_hash = hash_file(a.valid);
          ex.set_hash = sha256_hex(d.example.text);
          TokenizedExamples te = tokenize_examples(ex, tok, model.config().max_position_embeddings);
          RouteStats stats = route_examples(model, hash, ex, te, CollectOptions{}, Json{{"example", d.example.id}});
          for (double b : kBudgets) {
            const std::string bn = budget_name(b);
            fs::path scratch = a.out / "scratch-module";
            ModuleScore mod = score_module(ck, hash, stats, "router-prob", b, a.seed, d, scratch);
            ModuleScore rnd = score_module(ck, hash, stats, "random", b, a.seed + 1000 + i, d, scratch);
            double full = out["full_ppl"].get<double>();
            out["budgets"][bn] = {{"routed_kept", mod.routed_kept},
                                  {"module_ppl", mod.ppl},
                                  {"module_increase", mod.ppl / full - 1},
                                  {"random_ppl", rnd.ppl},
                                  {"random_increase", rnd.ppl / full - 1},
                                  {"module_experts", mod.selection.to_json()}};
            if (b == 0.25) top25[r][d.name] = mod.selection;
            std::printf("[%s] %-10s %-5s full %.2f  module %.2f (%s)  random %.2f (%s)\n", r, d.name.c_str(), bn.c_str(),
                        full, mod.ppl, pct(mod.ppl / full - 1).c_str(), rnd.ppl, pct(rnd.ppl / full - 1).c_str());
            std::fflush(stdout);
          }
        }
      }
    });
    result["domains"] = per_domain;
    result["eval_seconds"] = eval_secs;

    // 4. summaries: means over domains, domain overlap.
    for (const char* r : kRouters) {
      Json m = {{"full_ppl", 0.0}};
      double full = 0;
      std::map<std::string, double> inc;
      for (const auto& d : per_domain) {
        full += d[r]["full_ppl"].get<double>();
        for (double b : kBudgets) {
          const Json& x = d[r]["budgets"][budget_name(b)];
          inc["module " + budget_name(b)] += x["module_increase"].get<double>();
          inc["random " + budget_name(b)] += x["random_increase"].get<double>();
        }
      }
      const double n = double(per_domain.size());
      m["full_ppl"] = full / n;
      for (const auto& [k, v] : inc) m[k] = v / n;
      double jsum = 0;
      int pairs = 0;
      for (const auto& [da, sa] : top25[r])
        for (const auto& [db, sb] : top25[r]) {
          double v = mean_jaccard(sa, sb);
          result["jaccard"][r][da][db] = v;
          if (da < db) jsum += v, ++pairs;
        }
      m["jaccard"] = pairs ? jsum / pairs : 0.0;
      result["mean"][r] = m;
    }
    write_file_atomic(a.results / "modularity.json", result.dump(2) + "\n");
    write_file_atomic(a.results / "modularity.md", markdown(result));
    std::printf("wrote %s and %s\n", (a.results / "modularity.json").c_str(), (a.results / "modularity.md").c_str());
    for (const char* r : kRouters) {
      const Json& m = result["mean"][r];
      std::printf("%-8s full ppl %.1f | module 25%% %s, 12.5%% %s | random 25%% %s, 12.5%% %s | Jaccard %.3f\n", r,
                  m["full_ppl"].get<double>(), pct(m["module 25%"].get<double>()).c_str(),
                  pct(m["module 12.5%"].get<double>()).c_str(), pct(m["random 25%"].get<double>()).c_str(),
                  pct(m["random 12.5%"].get<double>()).c_str(), m["jaccard"].get<double>());
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_modularity: %s\n", e.what());
    return 1;
  }
}
