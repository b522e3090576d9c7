// What `emo finetune` and `emo pretrain` print when their run ends (rank 0 only).
#pragma once

#include <string>

#include "cli/common.h"
#include "core/util/error.h"
#include "core/util/log.h"
#include "core/util/progress.h"
#include "finetune/trainer.h"

namespace emo::cli {

// `extra` adds keys to the JSON summary; `label` goes into the line after the path.
inline void print_train_result(const TrainResult& r, const fs::path& out, bool json, const Json& extra = Json::object(),
                               const std::string& label = "") {
  if (json) {
    Json j = r.summary;
    j["content_hash"] = r.output_hash;
    for (const auto& [k, v] : extra.items()) j[k] = v;
    print_json(j);
    return;
  }
  const Json& f = r.summary["final"];
  print_line(cat("wrote ", out.string(), " (", label, r.steps, " steps, final loss ",
                 f.contains("loss") ? f["loss"].get<double>() : 0.0, ", ",
                 human_count(r.summary["tokens_per_second"].get<double>()), " tokens/s, ", r.output_hash, ")"));
}

}  // namespace emo::cli
