#include "recipes/reference.h"

namespace emo {

namespace {
// A help text in one table cell: its lines (a registry's entries, one per line) become
// HTML line breaks, which Markdown tables allow.
std::string escape_cell(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '|') {
      out += "\\|";
    } else if (s[i] == '\n') {
      out += "<br>";
      while (i + 1 < s.size() && s[i + 1] == ' ') ++i;
    } else {
      out += s[i];
    }
  }
  return out;
}
}  // namespace

std::string recipe_reference_markdown(const StepCatalogue& catalogue) {
  std::string md = std::string(kReferenceBegin) + "\n\n";
  for (const auto& t : catalogue) {
    md += "### `" + t.command + "`\n\n" + t.summary + ".";
    if (!t.writes.empty()) md += " " + t.writes;
    md += "\n\n";
    md += t.out_file.empty() ? "`${steps.ID.out}` is the step's directory, `WORKDIR/ID`.\n\n"
                             : "`${steps.ID.out}` is the file `WORKDIR/ID/" + t.out_file + "`.\n\n";
    md += "| setting | type | |\n| --- | --- | --- |\n";
    for (const auto& s : t.settings) {
      std::string notes = escape_cell(s.help);
      if (s.required) notes = "**required.** " + notes;
      if (!s.choices.empty() && s.help.find('\n') == std::string::npos) {  // a help of lines lists them already
        std::string list;
        for (const auto& c : s.choices) list += (list.empty() ? "" : ", ") + ("`" + c + "`");
        notes += " One of " + list + ".";
      }
      if (s.input_path) notes += " *(read: its hash enters the cache key)*";
      md += "| `" + s.key + "` | " + field_kind_name(s.kind) + " | " + notes + " |\n";
    }
    md += "\n";
  }
  return md + kReferenceEnd + "\n";
}

}  // namespace emo
