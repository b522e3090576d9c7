#include "core/text/dataset.h"

#include "core/io/jsonl.h"
#include "core/util/error.h"

namespace emo {

namespace {
std::string string_field(const Json& r, const std::string& key) {
  auto it = r.find(key);
  if (it == r.end() || !it->is_string()) return "";
  return it->get<std::string>();
}
}  // namespace

TextDocs load_text_docs(const std::string& path, const TextFilter& f) {
  TextDocs out;
  JsonlReader reader(path);
  Json r;
  while (f.skip_bad ? reader.next_skipping_bad(r, out.skipped_bad) : reader.next(r)) {
    auto it = r.find(f.text_field);
    if (it == r.end() || !it->is_string()) {
      if (f.skip_bad) {
        ++out.skipped_bad;
        continue;
      }
      fail(path, cat("line ", reader.line()), "no string field '", f.text_field, "'");
    }
    TextDoc d{string_field(r, "id"), string_field(r, "domain"), it->get<std::string>(), reader.line()};
    if (!f.domain.empty() && d.domain != f.domain) continue;
    if (!f.ids.empty() && !f.ids.count(d.id)) continue;
    if (f.exclude.count(d.id)) continue;
    out.docs.push_back(std::move(d));
    if (f.limit && out.docs.size() >= f.limit) break;
  }
  return out;
}

fs::path corpus_split_path(const fs::path& data_root, const std::string& split) {
  return data_root / "corpus" / (split + ".jsonl.gz");
}

}  // namespace emo
