// A command line as a POSIX shell reads it: what provenance records and `emo run --dry-run`
// prints, so that a reader can paste it back into a terminal.
#pragma once

#include <string>
#include <vector>

namespace emo {

// `word` unchanged when the shell reads it as itself, else in single quotes (a quote inside
// written '\'').
std::string shell_quote(const std::string& word);

// The words quoted and joined by spaces.
std::string shell_words(const std::vector<std::string>& words);

}  // namespace emo
