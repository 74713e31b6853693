#pragma once
// A did-you-mean for a mistyped word: kpsctl's commands, options and values, the field names
// of a job file's NDJSON lines, and the configuration file's sections and keys. One copy for
// kpsd and kpsctl. No I/O; also built into the fuzz targets' parsers.
#include <string>
#include <string_view>
#include <vector>

namespace kpsd {

// " (did you mean `list`?)" for the known word closest to `word` (at most two edits, a swap of
// neighbours counting as one, and fewer than the word's length), or "" when none is that close.
std::string did_you_mean(std::string_view word, const std::vector<std::string>& known);

}  // namespace kpsd
