// emo analyze usage / clusters as one call: one pass of a model over a corpus, its expert
// usage (and with clusters.k > 0 the token clusters), written to OUT/analysis.json and
// OUT/report.html. The commands' flags and the recipe steps' settings are the specs' rows.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "analyze/analyze.h"
#include "core/util/fields.h"
#include "core/util/fs.h"

namespace emo {

struct AnalyzeRequest {
  fs::path model, out;
  CorpusSource source;  // its path is --data
  int64_t max_length = 0;  // tokens per document (0: the model's context)
  int64_t batch = 8;
  double top_fraction = 0.25;  // share of experts compared by the Jaccard overlap, in (0, 1]
  ClusterOptions clusters;     // k 0: usage only
  fs::path tokenizer;          // "": the model's
  fs::path experts;            // analyse the model restricted to this module
  std::string device = "auto";
  bool overwrite = false;
  std::vector<std::string> command_line;  // recorded in analysis.json
};

struct AnalyzeResult {
  fs::path out;
  int64_t documents = 0, tokens = 0;
  Json usage;     // UsageReport::summary()
  Json clusters;  // ClusterReport::to_json() without the clusters themselves; null without --k
  Json to_json() const;
};

// progress(done, total) in tokens.
AnalyzeResult run_analyze(const AnalyzeRequest& request, const std::function<void(uint64_t, uint64_t)>& progress = {});

const RequestSpec<AnalyzeRequest>& analyze_usage_request_spec();
const RequestSpec<AnalyzeRequest>& analyze_clusters_request_spec();

}  // namespace emo
