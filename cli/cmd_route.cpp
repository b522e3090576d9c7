// emo route: routing statistics of a model on task examples, saved for selection.
#include "cli/surgery_flags.h"
#include "core/checkpoint/content_hash.h"
#include "core/util/error.h"
#include "surgery/extract.h"

namespace emo::cli {

void add_route(CLI::App& app) {
  struct Opts {
    std::string model, out, experts, device = "auto", tokenizer;
    ExampleFlags examples;
    bool json = false, verify_hash = false;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("route", "Routing statistics of a model on task examples (per layer and expert)");
  cmd->add_option("--model", o->model, "Checkpoint directory")->required();
  o->examples.add(cmd);
  cmd->add_option("--out", o->out, "Statistics file to write (.safetensors)")->required();
  cmd->add_option("--tokenizer", o->tokenizer, "tokenizer.json (default: the model's)");
  add_model_flags(cmd, o->experts, o->device);
  cmd->add_flag("--verify-hash", o->verify_hash, "Recompute the model's content hash instead of trusting its provenance");
  cmd->add_flag("--json", o->json, "Print the summary as JSON");
  cmd->footer(
      "Writes OUT: per layer and expert the summed router probability, top-k counts, gate weights and the EASY-EP and\n"
      "REAP scores, with the model hash, the examples' hash and the settings in its header. Example:\n"
      "  emo route --model out/tiny --data data/gsm8k/train.jsonl --limit 1 --shots 8 --out math.stats.safetensors");
  cmd->callback([o] {
    LoadedModel m = load_model(o->model, o->experts, o->device, o->tokenizer);
    std::string model_hash = parent_content_hash(*m.checkpoint, o->verify_hash);
    RoutedExamples ex = read_examples(o->examples, m);
    RouteStats s = collect_with_progress(m, model_hash, ex, o->examples, routing_of(m));
    if (m.restricted) s.settings["experts"] = m.experts.to_json();
    s.save(o->out);
    Json top = Json::object();
    for (size_t l = 0; l < s.layers.size(); ++l) {
      if (!s.layers[l].moe) continue;
      auto best = std::get<1>(s.mean_prob(int(l)).topk(std::min<int64_t>(5, s.layers[l].prob_sum.size(0))));
      top[std::to_string(l)] = std::vector<int64_t>(best.data_ptr<int64_t>(), best.data_ptr<int64_t>() + best.numel());
    }
    Json j = {{"out", o->out}, {"examples", s.examples}, {"tokens", s.tokens}, {"model_hash", model_hash},
              {"examples_hash", s.examples_hash}, {"top_experts_by_router_prob", top}};
    if (o->json) print_json(j);
    else print_line(cat("wrote ", o->out, ": ", s.examples, " examples, ", s.tokens, " tokens"));
  });
}

EMO_REGISTER_COMMAND(80, add_route);

}  // namespace emo::cli
