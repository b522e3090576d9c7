#include "core/util/shell.h"

namespace emo {

namespace {

// Characters no POSIX shell (nor zsh's globbing) gives a meaning inside a word.
bool plain(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string("_-./=:,+@%").find(c) != std::string::npos;
}

}  // namespace

std::string shell_quote(const std::string& word) {
  bool quote = word.empty();
  for (char c : word) quote = quote || !plain(c);
  if (!quote) return word;
  std::string out = "'";
  for (char c : word) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string shell_words(const std::vector<std::string>& words) {
  std::string line;
  for (const auto& w : words) line += (line.empty() ? "" : " ") + shell_quote(w);
  return line;
}

}  // namespace emo
