#pragma once
#include <string>

namespace kpsd {

// Logs go to stderr: journald adds its own timestamps when JOURNAL_STREAM is set, colours only
// on a terminal. `level` is an spdlog level name (validated by the config parser).
void setup_logging(const std::string& level);

}  // namespace kpsd
