#pragma once
#include <cstddef>
#include <exception>
#include <string>
#include <string_view>

namespace kpsd {

// Logs what a finished coroutine threw (co_spawn completion handlers); nothing for null.
void log_exception(std::string_view what, std::exception_ptr e);

// The longest message one log record carries; past it, "...(N bytes)".
inline constexpr std::size_t max_log_record_bytes = 4096;

// Logs go to stderr. Each call is one record: its message is escaped (control characters, C1,
// bidi overrides, bytes that are not UTF-8: outside_text.hpp) and capped at
// max_log_record_bytes, so text from outside can never forge a record. Under systemd
// (JOURNAL_STREAM set) each line starts with its syslog priority as "<N>" and carries no timestamp
// (journald adds both); elsewhere lines start with an RFC 3339 UTC timestamp, coloured on a
// terminal. `level` is an spdlog level name (validated by the config parser).
void setup_logging(const std::string& level);

}  // namespace kpsd
