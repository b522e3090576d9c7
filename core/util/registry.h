// Registries: lists of small named entries (merge modes, train modes, overlap rules,
// compose rules, ...), each with a `name` and a `description`. One lookup and one listing
// for all of them, so that an unknown name gets the same message everywhere and `--help`
// lists exactly what the code accepts.
#pragma once

#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/util/error.h"

namespace emo {

template <class Entry>
std::vector<std::string> entry_names(const std::vector<Entry>& entries) {
  std::vector<std::string> names;
  for (const auto& e : entries) names.push_back(e.name);
  return names;
}

// "a, b, c"
template <class Entry>
std::string entry_list(const std::vector<Entry>& entries) {
  std::string out;
  for (const auto& e : entries) out += (out.empty() ? "" : ", ") + std::string(e.name);
  return out;
}

// The entry called `name`; else emo::Error naming `flag`: "unknown WHAT (a, b, c)".
template <class Entry>
const Entry& find_entry(const std::vector<Entry>& entries, const std::string& name, const std::string& flag,
                        const std::string& what) {
  for (const auto& e : entries)
    if (e.name == name) return e;
  fail(flag, name, "unknown ", what, " (", entry_list(entries), ")");
}

template <class Entry, class = void>
struct has_reference : std::false_type {};
template <class Entry>
struct has_reference<Entry, std::void_t<decltype(std::declval<Entry>().reference)>> : std::true_type {};

// `lead` followed by one "name: description (reference)" line per entry, for --help.
template <class Entry>
std::string entries_help(const std::string& lead, const std::vector<Entry>& entries) {
  std::string out = lead;
  for (const auto& e : entries) {
    out += "\n  " + std::string(e.name) + ": " + e.description;
    if constexpr (has_reference<Entry>::value)
      if (!std::string(e.reference).empty()) out += " (" + std::string(e.reference) + ")";
  }
  return out;
}

}  // namespace emo
