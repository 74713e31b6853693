#pragma once
#include <exception>
#include <string>
#include <string_view>

namespace kpsd {

// Logs what a finished coroutine threw (co_spawn completion handlers); nothing for null.
void log_exception(std::string_view what, std::exception_ptr e);

// Logs go to stderr: journald adds its own timestamps when JOURNAL_STREAM is set, colours only
// on a terminal. `level` is an spdlog level name (validated by the config parser).
void setup_logging(const std::string& level);

}  // namespace kpsd
