// emo convert's request, its fields, and the entry point that owns OUT.
#include <chrono>

#include "core/checkpoint/content_hash.h"
#include "core/checkpoint/convert.h"
#include "core/checkpoint/provenance.h"
#include "core/checkpoint/summary.h"
#include "core/util/error.h"
#include "core/util/log.h"

namespace emo {

ConvertOptions ConvertRequest::options() const {
  ConvertOptions o;
  if (!layout.empty()) o.layout = layout == "fused" ? ExpertLayout::Fused : ExpertLayout::PerExpert;
  if (!shard_size.empty()) o.max_shard_bytes = parse_size(shard_size, "--shard-size");
  if (!dtype.empty()) {
    auto d = dtype_from_user(dtype);
    if (!d) fail("--dtype", dtype, "unknown dtype (bf16, fp16, fp32, fp64)");
    o.dtype = *d;
  }
  return o;
}

ConvertResult run_convert(const ConvertRequest& r, const std::function<void(uint64_t, uint64_t)>& progress) {
  Checkpoint src = Checkpoint::open(r.model);
  const ConvertOptions options = r.options();
  Provenance prov("convert");
  prov.argv = r.command_line;
  prov.settings["layout"] = r.layout.empty() ? layout_name(src.layout()) : r.layout;
  prov.settings["shard_size"] = r.shard_size;
  prov.settings["dtype"] = r.dtype;
  AtomicDir out(r.out, r.overwrite);
  const uint64_t total = src.store().total_bytes();
  const auto start = std::chrono::steady_clock::now();
  prov.output_hash = convert_checkpoint(src, out.path(), options, [&](uint64_t done) {
    if (progress) progress(done, total);
  });
  // Without a dtype change the content is the input's, so its hash is known already.
  const std::string parent_hash = options.dtype ? content_hash(src) : prov.output_hash;
  prov.add_parent("model", src.dir(), parent_hash);
  prov.finished = now_iso8601();
  prov.metrics["bytes"] = total;
  prov.metrics["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  prov.write(out.path());
  write_file_atomic(out / kModelCardFile, model_card("emo convert of " + src.dir().filename().string(), src.config(), prov,
                                                     "The same model as its parent, rewritten by `emo convert`."));
  out.commit();
  return {out.target(), prov.output_hash};
}

namespace {

using K = FieldSpec::Kind;

RequestSpec<ConvertRequest> make_spec() {
  using R = ConvertRequest;
  RequestSpec<R> s;
  s.command = "convert";
  s.summary = "Rewrite a checkpoint in another expert layout, shard size or dtype";
  s.footer =
      "Writes OUT/config.json, weights, the input's other files, provenance.yaml and README.md.\n"
      "Example: emo convert --model out/tiny --out out/tiny-fused --layout fused";
  s.fields = {
      member_field(field("model", K::String, "Input checkpoint directory").must().reads(), &R::model),
      member_field(field("out", K::String, "Output checkpoint directory").must().caller_owned(), &R::out),
      member_field(field("layout", K::String, "per-expert or fused (default: as the input)").one_of({"per-expert", "fused"}),
                   &R::layout),
      member_field(field("shard-size", K::String, "Largest weight file, e.g. 5GB (default: as the input)")
                       .checked(checked_by([](const std::string& t) { parse_size(t, "--shard-size"); })),
                   &R::shard_size),
      member_field(field("dtype", K::String, "Float dtype of the output: bf16, fp16, fp32 (default: as the input)")
                       .checked([](const std::string& t) {
                         return dtype_from_user(t) ? std::string() : "unknown dtype (bf16, fp16, fp32, fp64)";
                       }),
                   &R::dtype),
      member_field(field("force", K::Bool, "Replace --out if it exists").caller_owned(), &R::overwrite),
  };
  return s;
}

}  // namespace

const RequestSpec<ConvertRequest>& convert_request_spec() { return built_once<ConvertRequest, make_spec>(); }

}  // namespace emo
