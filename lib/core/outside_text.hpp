#pragma once
// Text from outside kpsd (API answers, database rows, socket requests, files) as it may be
// shown: in a log line, on an operator's terminal, in a spreadsheet cell (issue 31). Plain
// functions, no I/O; the logger (logging.cpp) and kpsctl's every output form go through them.
#include <cstddef>
#include <string>
#include <string_view>

namespace kpsd {

// `text` safe for one line of a log or a terminal: C0 controls and DEL as \xNN (so no CR or
// LF can start a record, and no ESC sequence reaches a terminal), C1 controls (U+0080 to
// U+009F) and the bidi overrides and isolates (U+202A to U+202E, U+2066 to U+2069, which
// reorder what a reader sees) as \uNNNN, and bytes that are not UTF-8 as \xNN. Everything
// else, other scripts included, is kept as it is.
std::string printable(std::string_view text);

// printable() of at most `max_bytes` of `text`; a longer text ends in "...(N bytes)".
std::string printable_capped(std::string_view text, std::size_t max_bytes);

// A CSV cell a spreadsheet will not run: one starting with =, +, -, @, a tab or a CR gets a
// leading ' (OWASP, "CSV Injection"). Other cells are returned as they are.
std::string spreadsheet_safe(std::string_view cell);

// A short excerpt of a server's text for a job's error_msg: at most `max_bytes`, cut at a
// character (Huawei's messages are often Chinese; kpsctl's JSON reader refuses broken UTF-8),
// control characters blanked, "..." when cut. Never throws.
std::string excerpt(std::string_view text, std::size_t max_bytes = 200);

}  // namespace kpsd
