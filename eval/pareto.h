// `emo eval pareto`: quality against memory, the EMO paper's Figure 1 at any scale. A
// modular model's modules (and a baseline's, chosen the same way) are set beside models
// trained from scratch at a module's memory:
//
//   per model with modules (the EMO one, then each baseline), per domain of the corpus:
//     examples   the domain's first `example_docs` documents of >= example_min_tokens
//                tokens choose the few-example module; the rest are what is scored
//     budgets    each fraction of every layer's experts (shared included, Budget::fraction):
//                the module chosen from the examples, from the domain's whole split (every
//                document of it in the corpus, the scored ones included: the most the
//                split can tell), and a seeded random module; 100% is the full model
//     score      perplexity on the domain's scored documents, the full model restricted to
//                the module's experts (what the extracted module computes)
//   per model from scratch: the whole model on the same documents.
//
// A point's memory is its weights in its checkpoint's storage dtype, from the config
// (what `emo extract` writes, headers aside); its quality is the mean over domains of
// the per-domain perplexities, each domain scored by its own module.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/checkpoint/experts.h"
#include "core/io/json.h"
#include "core/io/svg_chart.h"
#include "core/model/weights.h"
#include "core/text/dataset.h"
#include "core/util/fields.h"
#include "core/util/fs.h"
#include "eval/perplexity.h"
#include "eval/report.h"

namespace emo {

struct ParetoModel {
  std::string name;  // the model's label; for a from-scratch model, its line (kind)
  std::string dir;
};

struct ParetoRequest {
  ParetoModel model{"emo", ""};        // the model whose modules are measured (EMO)
  std::vector<ParetoModel> baselines;  // full models whose modules are chosen the same way
  std::vector<ParetoModel> scratch;    // trained from scratch; models sharing a name form one line
  std::vector<double> fractions = {0.125, 0.25, 0.5};  // of each layer's experts, in (0, 1)
  std::string method = "router-prob";  // a selection method that reads routing statistics
  size_t example_docs = 1;             // documents per domain choosing the few-example module
  int64_t example_min_tokens = 128;    // an example document's least length (else the longest)
  bool whole_split = true;             // also a module chosen from the domain's whole split
  bool random = true;                  // also a seeded random module per budget
  uint64_t seed = 0;                   // of the random modules
  std::vector<TextDoc> docs;           // the corpus split, with domains
  size_t docs_per_domain = 0;          // scored documents per domain (0: all but the examples)
  PplOptions ppl;                      // window and batch (routing is set per point)
  LoadOptions load;                    // device and compute dtype of every model
  // What run_pareto_report reads docs and load from, and where it writes.
  std::string corpus;                  // the split, JSONL(.gz) of {text, domain}
  std::string device = "auto";
  fs::path out;                        // a new directory: pareto.json, pareto.md, pareto.svg
  bool overwrite = false;              // replace OUT if it exists
  std::vector<std::string> command_line;  // recorded in pareto.json
};

// emo::Error naming the flag: fractions outside (0, 1) or repeated, a method without
// statistics, no documents, a model named twice, nothing to compare.
void check_pareto_request(const ParetoRequest& request);

struct ParetoPoint {
  std::string series;   // "<model>: module, 1 document", "<model>: random module", "<kind>"
  std::string model;    // the model's label (from-scratch: its directory's name)
  double fraction = 1;  // of the model's experts kept (1: the whole model)
  int64_t keep = 0;     // experts kept in the largest MoE layer, shared included (0: no MoE layer)
  uint64_t params = 0, bytes = 0;
  std::map<std::string, double> ppl;  // per domain
  std::map<std::string, ExpertSelection> experts;  // per domain, the module's (none for a whole model)
  double mean_ppl() const;
};

struct ParetoResult {
  std::vector<std::string> domains;
  std::map<std::string, std::vector<std::string>> example_ids;  // per domain
  std::map<std::string, size_t> scored_docs;                    // per domain
  std::vector<ParetoPoint> points;
  double seconds = 0;
};

// on_progress(done, total, what) before each model load and evaluation.
ParetoResult run_pareto(const ParetoRequest& request,
                        const std::function<void(size_t done, size_t total, const std::string& what)>& on_progress = {});

// The command's whole job: the corpus and device resolved into docs and load, the request
// checked, every point measured, OUT written atomically (an existing OUT is refused before
// any work). Returns pareto.json's body and the table it prints.
struct ParetoReport {
  Json json;
  Table table;
};
ParetoReport run_pareto_report(ParetoRequest request,
                               const std::function<void(size_t done, size_t total, const std::string& what)>& on_progress = {});
const RequestSpec<ParetoRequest>& pareto_request_spec();

// pareto.json's body: the settings, the domains with their example ids, every point.
Json pareto_json(const ParetoRequest& request, const ParetoResult& result);
// One row per point: series, experts kept, memory, perplexity per domain and the mean.
Table pareto_table(const ParetoResult& result);
// Mean perplexity against weight bytes (MB), one line per series.
LineChart pareto_chart(const ParetoResult& result);
// Per budget, the model's modules against the from-scratch point of nearest memory (within
// 10%) of each from-scratch line: one sentence each, with both numbers and the difference.
std::vector<std::string> pareto_findings(const ParetoRequest& request, const ParetoResult& result);
// pareto.md: how it was made, the findings, the table and the chart (pareto.svg).
std::string pareto_markdown(const ParetoRequest& request, const ParetoResult& result);

}  // namespace emo
