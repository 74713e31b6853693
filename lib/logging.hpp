#pragma once
#include <exception>
#include <string>
#include <string_view>

namespace kpsd {

// Logs what a finished coroutine threw (co_spawn completion handlers); nothing for null.
void log_exception(std::string_view what, std::exception_ptr e);

// Logs go to stderr. Under systemd (JOURNAL_STREAM set) each line starts with its syslog
// priority as "<N>" and carries no timestamp (journald adds both); elsewhere lines start with an
// RFC 3339 UTC timestamp, coloured on a terminal. `level` is an spdlog level name (validated by
// the config parser).
void setup_logging(const std::string& level);

}  // namespace kpsd
