// The HTML report: one self-contained file (inline CSS and SVG, no script, nothing
// fetched), so it opens from disk anywhere. Every heatmap cell is a <rect class="cell">
// carrying its map, row, column and exact value (data-map, data-row, data-col, data-v),
// like the sweep chart's points, so the picture can be checked against the JSON.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "analyze/analyze.h"
#include "core/util/error.h"
#include "eval/report.h"
#include "core/io/svg_chart.h"

namespace emo {

namespace {

struct Heatmap {
  std::string key, title;
  std::vector<std::string> rows, cols;
  std::vector<std::vector<double>> values;  // [row][col]
  double lo = 0, hi = NAN;                  // colour range; hi NAN: the largest value
  bool annotate = false;                    // print each value in its cell
  int digits = 2;
};

std::string num(double v, int digits = 1) { return svg_number(v, digits); }

// A sequential blue scale (ColorBrewer "Blues" end points through a middle stop).
std::string shade(double t) {
  t = std::isfinite(t) ? std::clamp(t, 0.0, 1.0) : 0.0;
  const double stops[3][3] = {{247, 251, 255}, {107, 174, 214}, {8, 48, 107}};
  int i = t < 0.5 ? 0 : 1;
  double u = t < 0.5 ? t / 0.5 : (t - 0.5) / 0.5;
  char b[16];
  std::snprintf(b, sizeof b, "#%02x%02x%02x", int(std::lround(stops[i][0] + u * (stops[i + 1][0] - stops[i][0]))),
                int(std::lround(stops[i][1] + u * (stops[i + 1][1] - stops[i][1]))),
                int(std::lround(stops[i][2] + u * (stops[i + 1][2] - stops[i][2]))));
  return b;
}

double largest(const Heatmap& h) {
  double m = 0;
  for (const auto& r : h.values)
    for (double v : r)
      if (std::isfinite(v)) m = std::max(m, v);
  return m > 0 ? m : 1;
}

std::string heatmap_svg(const Heatmap& h) {
  const double cell_w = h.annotate ? 44 : std::clamp(760.0 / double(std::max<size_t>(h.cols.size(), 1)), 7.0, 22.0);
  const double cell_h = h.annotate ? 24 : 16;
  size_t label_chars = 0;
  for (const auto& r : h.rows) label_chars = std::max(label_chars, r.size());
  const double left = 10 + 7.0 * double(std::min<size_t>(label_chars, 24)), top = 44;
  // Wide enough for the title (about 7.5 units per character at 13px bold).
  const double width = std::max(left + cell_w * double(h.cols.size()) + 20, left + 7.5 * double(h.title.size()));
  const double height = top + cell_h * double(h.rows.size()) + 56;
  const double hi = std::isfinite(h.hi) ? h.hi : largest(h);
  std::string o = "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"heatmap\" data-map=\"" + xml_escape(h.key) +
                  "\" width=\"" + num(width) + "\" height=\"" + num(height) + "\" viewBox=\"0 0 " + num(width) + " " +
                  num(height) + "\" font-family=\"sans-serif\" font-size=\"11\">\n";
  o += "<text x=\"" + num(left) + "\" y=\"16\" font-size=\"13\" font-weight=\"bold\">" + xml_escape(h.title) +
       "</text>\n";
  // Column labels: all of them when they fit, else every fifth.
  size_t every = cell_w >= 14 ? 1 : 5;
  for (size_t c = 0; c < h.cols.size(); c += every)
    o += "<text x=\"" + num(left + cell_w * (double(c) + 0.5)) + "\" y=\"" + num(top - 6) +
         "\" text-anchor=\"middle\" fill=\"#555\">" + xml_escape(h.cols[c]) + "</text>\n";
  for (size_t r = 0; r < h.rows.size(); ++r) {
    double y = top + cell_h * double(r);
    o += "<text x=\"" + num(left - 6) + "\" y=\"" + num(y + cell_h / 2) +
         "\" text-anchor=\"end\" dominant-baseline=\"middle\">" + xml_escape(h.rows[r].substr(0, 24)) + "</text>\n";
    for (size_t c = 0; c < h.cols.size(); ++c) {
      double v = h.values[r][c], t = (v - h.lo) / (hi - h.lo);
      double x = left + cell_w * double(c);
      o += "<rect class=\"cell\" data-map=\"" + xml_escape(h.key) + "\" data-row=\"" + xml_escape(h.rows[r]) +
           "\" data-col=\"" + xml_escape(h.cols[c]) + "\" data-v=\"" + exact_number(v) + "\" x=\"" + num(x) + "\" y=\"" +
           num(y) + "\" width=\"" + num(cell_w) + "\" height=\"" + num(cell_h) + "\" fill=\"" + shade(t) +
           "\" stroke=\"#fff\" stroke-width=\"0.5\"><title>" + xml_escape(h.rows[r] + ", " + h.cols[c] + ": ") +
           num(v, 4) + "</title></rect>\n";
      if (h.annotate)
        o += "<text x=\"" + num(x + cell_w / 2) + "\" y=\"" + num(y + cell_h / 2) +
             "\" text-anchor=\"middle\" dominant-baseline=\"middle\" fill=\"" + (t > 0.55 ? "#fff" : "#222") + "\">" +
             num(v, h.digits) + "</text>\n";
    }
  }
  // Colour legend: ten swatches from lo to hi.
  double ly = top + cell_h * double(h.rows.size()) + 16;
  for (int i = 0; i < 10; ++i)
    o += "<rect x=\"" + num(left + 16.0 * i) + "\" y=\"" + num(ly) + "\" width=\"16\" height=\"10\" fill=\"" +
         shade((i + 0.5) / 10) + "\"/>\n";
  o += "<text x=\"" + num(left) + "\" y=\"" + num(ly + 24) + "\" fill=\"#555\">" + num(h.lo, 3) + "</text>\n";
  o += "<text x=\"" + num(left + 160) + "\" y=\"" + num(ly + 24) + "\" text-anchor=\"end\" fill=\"#555\">" +
       num(hi, 3) + "</text>\n";
  return o + "</svg>\n";
}

// Whitespace made visible, so a cluster of spaces and newlines reads as such.
std::string visible(const std::string& token) {
  std::string o;
  for (char c : token) {
    if (c == ' ') o += "\u2423";
    else if (c == '\n') o += "\u21b5";
    else if (c == '\t') o += "\u21e5";
    else o += c;
  }
  return o;
}

// Numbers are right-aligned, text (settings, token lists) left-aligned.
bool numeric(const std::string& s) {
  if (s.empty()) return false;
  char* end = nullptr;
  std::strtod(s.c_str(), &end);
  return end == s.c_str() + s.size();
}

std::string html_table(const Table& t) {
  std::string o = "<table>\n<tr>";
  for (const auto& h : t.header) o += "<th>" + xml_escape(h) + "</th>";
  o += "</tr>\n";
  for (const auto& row : t.rows) {
    o += "<tr>";
    for (size_t i = 0; i < row.size(); ++i)
      o += (i && numeric(row[i]) ? "<td class=\"n\">" : "<td>") + xml_escape(row[i]) + "</td>";
    o += "</tr>\n";
  }
  return o + "</table>\n";
}

std::string page_start(const std::string& title, const Json& header) {
  std::string o =
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>" + xml_escape(title) +
      "</title>\n<style>\n"
      "body{font-family:sans-serif;margin:24px;color:#222;max-width:1400px}\n"
      "h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}\n"
      "table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ddd;padding:3px 8px;font-size:13px}\n"
      "th{background:#f3f3f3}td.n{text-align:right;font-variant-numeric:tabular-nums}\n"
      ".maps{display:flex;flex-wrap:wrap;gap:16px}.note{color:#555;font-size:13px}\n"
      "code{background:#f5f5f5;padding:1px 3px}\n"
      "</style>\n</head>\n<body>\n<h1>" +
      xml_escape(title) + "</h1>\n";
  Table t{{"setting", "value"}, {}};
  for (auto it = header.begin(); it != header.end(); ++it)
    t.rows.push_back({it.key(), it->is_string() ? it->get<std::string>() : it->dump()});
  return o + html_table(t);
}

std::vector<std::string> expert_labels(int64_t n) {
  std::vector<std::string> out;
  for (int64_t e = 0; e < n; ++e) out.push_back(cat(e));
  return out;
}

std::string usage_summary(const UsageReport& u) {
  std::string o = "<h2>Concentration per " + std::string(u.groups.size() > kMaxOverlapGroups ? "document" : "group") +
                  "</h2>\n<p class=\"note\">Over the routed experts, means over the MoE layers. Entropy of the mean "
                  "router probability in bits (uniform over N experts: log2 N); the fewest experts holding 50% / 90% "
                  "of it. Lower is more concentrated.</p>\n";
  Table t{{"group", "tokens", "documents", "entropy (bits)", "experts 50%", "experts 90%"}, {}};
  Json s = u.summary();
  for (size_t g = 0; g < u.groups.size(); ++g) {
    if (!s["groups"].contains(u.groups[g])) continue;
    const Json& m = s["groups"][u.groups[g]];
    t.rows.push_back({u.groups[g], cat(u.group_tokens[g]), cat(u.group_docs[g]), fixed(m["entropy_bits"].get<double>(), 3),
                      fixed(m["experts_50"].get<double>(), 2), fixed(m["experts_90"].get<double>(), 2)});
  }
  t.rows.push_back({"mean", "", "", fixed(s["mean_entropy_bits"].get<double>(), 3), fixed(s["mean_experts_50"].get<double>(), 2),
                    fixed(s["mean_experts_90"].get<double>(), 2)});
  o += html_table(t);
  if (s.contains("mean_jaccard")) {
    o += "<p class=\"note\">Overlap between groups, mean over pairs: Jaccard of their top " + num(100 * u.top_fraction, 0) +
         "% experts by mean probability, and the cosine similarity and correlation of their usage vectors. Lower is "
         "less overlapping.</p>\n";
    Table ov{{"layer", "mean Jaccard", "mean cosine", "mean correlation"}, {}};
    for (const auto& l : s["overlap_per_layer"])
      ov.rows.push_back({cat(l["layer"].get<int>()), l["mean_jaccard"].is_null() ? "-" : fixed(l["mean_jaccard"].get<double>(), 3),
                         l["mean_cosine"].is_null() ? "-" : fixed(l["mean_cosine"].get<double>(), 3),
                         l["mean_correlation"].is_null() ? "-" : fixed(l["mean_correlation"].get<double>(), 3)});
    ov.rows.push_back({"mean", s["mean_jaccard"].is_null() ? "-" : fixed(s["mean_jaccard"].get<double>(), 3),
                       s["mean_cosine"].is_null() ? "-" : fixed(s["mean_cosine"].get<double>(), 3),
                       s["mean_correlation"].is_null() ? "-" : fixed(s["mean_correlation"].get<double>(), 3)});
    o += html_table(ov);
  }
  return o;
}

std::string usage_maps(const UsageReport& u) {
  size_t shown = std::min(u.groups.size(), kMaxOverlapGroups);
  double hi = 0;
  for (size_t g = 0; g < shown; ++g)
    for (const auto& l : u.usage[g])
      for (double v : l.mean_prob) hi = std::max(hi, v);
  std::string o = "<h2>Expert usage: layer x expert, per group</h2>\n<p class=\"note\">Mean router probability of each "
                  "routed expert; one colour scale for all maps (0 to " +
                  num(hi, 3) + ").";
  if (shown < u.groups.size()) o += cat(" The first ", shown, " of ", u.groups.size(), " groups.");
  o += "</p>\n<div class=\"maps\">\n";
  for (size_t g = 0; g < shown; ++g) {
    Heatmap h{"usage:" + u.groups[g], u.groups[g] + " (" + cat(u.group_tokens[g]) + " tokens)", {}, {}, {}, 0, hi};
    for (size_t i = 0; i < u.layers.size(); ++i) {
      h.rows.push_back(cat("layer ", u.layers[i]));
      h.values.push_back(u.usage[g][i].mean_prob);
    }
    h.cols = expert_labels(u.routed.empty() ? 0 : *std::max_element(u.routed.begin(), u.routed.end()));
    for (auto& row : h.values) row.resize(h.cols.size(), NAN);
    o += heatmap_svg(h);
  }
  o += "</div>\n<h2>Expert usage: group x expert, per layer</h2>\n<div class=\"maps\">\n";
  for (size_t i = 0; i < u.layers.size(); ++i) {
    Heatmap h{cat("layer-usage:", u.layers[i]), cat("layer ", u.layers[i]), {}, expert_labels(u.routed[i]), {}, 0, hi};
    for (size_t g = 0; g < shown; ++g) h.rows.push_back(u.groups[g]), h.values.push_back(u.usage[g][i].mean_prob);
    o += heatmap_svg(h);
  }
  return o + "</div>\n";
}

std::string overlap_maps(const UsageReport& u) {
  if (u.overlap.empty()) return "";
  std::string o = "<h2>Overlap between groups, per layer</h2>\n<p class=\"note\">Left: Jaccard of the top " +
                  num(100 * u.top_fraction, 0) + "% experts; then the cosine similarity and the correlation of the usage vectors.</p>\n";
  for (const auto& ov : u.overlap) {
    o += "<div class=\"maps\">\n";
    o += heatmap_svg({cat("jaccard:", ov.layer), cat("layer ", ov.layer, ": Jaccard"), u.groups, u.groups, ov.jaccard,
                      0, 1, true});
    o += heatmap_svg({cat("cosine:", ov.layer), cat("layer ", ov.layer, ": cosine"), u.groups, u.groups, ov.cosine, 0,
                      1, true});
    o += heatmap_svg({cat("correlation:", ov.layer), cat("layer ", ov.layer, ": correlation"), u.groups, u.groups,
                      ov.correlation, -1, 1, true});
    o += "</div>\n";
  }
  return o;
}

std::string cluster_section(const ClusterReport& c) {
  std::string o = "<h2>Token clusters</h2>\n<p class=\"note\">Each token's fingerprint is its router probability over "
                  "the routed experts (" +
                  std::string(c.options.fingerprint_layer < 0 ? "all MoE layers concatenated"
                                                              : cat("layer ", c.options.fingerprint_layer)) +
                  "); " + cat(c.sampled) + " of " + cat(c.seen) + " tokens sampled (cap " + cat(c.options.cap) +
                  ", seed " + cat(c.options.seed) + "), k-means with k = " + cat(c.options.k) + " (" +
                  cat(c.iterations) + " iterations). Topic clusters have pure domains and keep a document together; "
                  "word-type clusters mix domains and split documents.</p>\n";
  Table t{{"measure", "value"},
          {{"cluster domain purity (token-weighted)", fixed(c.domain_purity, 3)},
           {"NMI(cluster, domain)", fixed(c.nmi, 3)},
           {"documents counted (>= " + cat(c.options.min_doc_tokens) + " sampled tokens)", cat(c.docs_counted)},
           {"mean clusters per document", fixed(c.mean_clusters_per_doc, 2)},
           {"mean share of a document in its main cluster", fixed(c.mean_dominant_share, 3)}}};
  o += html_table(t);
  Heatmap h{"cluster-domains", "share of each cluster's tokens per domain", {}, c.domains, {}, 0, 1, true};
  for (size_t k = 0; k < c.clusters.size(); ++k) {
    h.rows.push_back(cat("cluster ", k));
    std::vector<double> row;
    for (int64_t n : c.clusters[k].domain_counts)
      row.push_back(c.clusters[k].size ? double(n) / double(c.clusters[k].size) : 0.0);
    h.values.push_back(row);
  }
  o += heatmap_svg(h);
  Table ct{{"cluster", "tokens", "purity", "main domain", "most frequent tokens"}, {}};
  for (size_t k = 0; k < c.clusters.size(); ++k) {
    const auto& s = c.clusters[k];
    size_t top = size_t(std::max_element(s.domain_counts.begin(), s.domain_counts.end()) - s.domain_counts.begin());
    std::string tokens;
    for (const auto& tc : s.top_tokens)
      tokens += (tokens.empty() ? "" : "  ") + visible(tc.text.empty() ? cat("#", tc.id) : tc.text) + " (" +
                cat(tc.count) + ")";
    ct.rows.push_back({cat(k), cat(s.size), fixed(s.purity, 3), s.size ? c.domains[top] : "-", tokens});
  }
  return o + html_table(ct);
}

}  // namespace

std::string render_corpus_report(const CorpusAnalysis& a, const Json& header) {
  std::string o = page_start("emo analyze: expert usage", header);
  o += "<p>" + cat(a.documents) + " documents, " + cat(a.tokens) + " tokens.</p>\n";
  o += usage_summary(a.usage);
  if (a.clusters) o += cluster_section(*a.clusters);
  o += usage_maps(a.usage);
  o += overlap_maps(a.usage);
  return o + "</body>\n</html>\n";
}

std::string render_prompt_report(const PromptAnalysis& a, const Json& header) {
  std::string o = page_start("emo analyze: experts of one input", header);
  if (!a.modules.empty()) {
    Table t{{"module", "file", "mean coverage", "covers all"}, {}};
    for (const auto& l : a.layers) t.header.push_back(cat("layer ", l.layer));
    for (const auto& m : a.modules) {
      std::vector<std::string> row{m.name, m.path, fixed(m.mean, 3), m.covers_all ? "yes" : "no"};
      for (double v : m.per_layer) row.push_back(fixed(v, 3));
      t.rows.push_back(row);
    }
    o += "<h2>Known modules</h2>\n<p class=\"note\">Share of this input's routed expert choices that each module "
         "keeps, per layer.</p>\n" +
         html_table(t);
  }
  Heatmap h{"prompt-usage", "share of tokens choosing each routed expert", {}, {}, {}, 0, 1};
  int64_t widest = 0;
  for (const auto& l : a.layers) widest = std::max(widest, l.routed);
  h.cols = expert_labels(widest);
  for (const auto& l : a.layers) {
    h.rows.push_back(cat("layer ", l.layer));
    auto row = l.topk_freq;
    row.resize(size_t(widest), NAN);
    h.values.push_back(row);
  }
  o += "<h2>Experts per layer</h2>\n" + heatmap_svg(h);
  Table t{{"token"}, {}};
  for (const auto& l : a.layers) t.header.push_back(cat("layer ", l.layer));
  for (size_t i = 0; i < a.tokens.size(); ++i) {
    std::vector<std::string> row{visible(a.tokens[i])};
    for (const auto& l : a.layers) {
      std::string ids;
      for (int64_t e : l.token_experts[i]) ids += (ids.empty() ? "" : " ") + cat(e);
      row.push_back(ids);
    }
    t.rows.push_back(row);
  }
  return o + "<h2>Routed experts of each token</h2>\n" + html_table(t) + "</body>\n</html>\n";
}

}  // namespace emo
