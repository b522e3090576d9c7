#include "eval/tasks.h"

#include <algorithm>

namespace emo {

const EvalTask& ppl_task();    // eval/task_ppl.cpp
const EvalTask& gsm8k_task();  // eval/task_gsm8k.cpp
const EvalTask& mc_task();     // eval/task_mc.cpp

const std::vector<EvalTask>& eval_tasks() {
  // A list, not self-registration: the tasks live in a static library, whose unreferenced
  // objects the linker would drop.
  static const std::vector<EvalTask> tasks = {ppl_task(), gsm8k_task(), mc_task()};
  return tasks;
}

const Json* json_at(const Json& j, std::initializer_list<const char*> path) {
  const Json* at = &j;
  for (const char* k : path) {
    if (!at->is_object() || !at->contains(k)) return nullptr;
    at = &(*at)[k];
  }
  return at;
}

std::vector<std::string> keys_seen(const std::vector<Json>& records, const char* key) {
  std::vector<std::string> keys;
  for (const auto& r : records)
    if (const Json* p = json_at(r, {key}))
      for (auto it = p->begin(); it != p->end(); ++it)
        if (std::find(keys.begin(), keys.end(), it.key()) == keys.end()) keys.push_back(it.key());
  return keys;
}

std::string percent_with_interval(const Json* acc) {
  if (!acc) return "-";
  const auto& ci = (*acc)["ci95"];
  return fixed(100 * (*acc)["value"].get<double>(), 1) + " [" + fixed(100 * ci[0].get<double>(), 1) + ", " +
         fixed(100 * ci[1].get<double>(), 1) + "]";
}

}  // namespace emo
