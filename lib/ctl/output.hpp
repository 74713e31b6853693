#pragma once
// How kpsctl prints: the output format, errors (JSON on stdout under --json, a line on stderr
// otherwise), JSON with integers as integers, CSV fields, times, and reading typed replies.
#include "core/exit_codes.hpp"
#include "core/outside_text.hpp"
#include "ctl/control_client.hpp"
#include "model/job.hpp"
#include "protocol/control_reply.hpp"

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace kpsd::ctl {

inline constexpr int exit_failed = 1;
// Bad input, wherever it is: an argument, a line of a job file, a key file. Nothing was done.
inline constexpr int exit_cli_usage = 2;

enum class Format { table, json, csv };

struct Options {
  std::string socket;
  Format format = Format::table;
  bool wide = false;                     // -o wide: a table with more columns
  bool table_asked = false;              // -o table given (not the default)
  bool headers = true;                   // --no-headers: rows only (tables and CSV)
  std::optional<std::int64_t> watch_ms;  // --watch: print again every this many ms
  bool json() const { return format == Format::json; }
};

// Reports an error the way the chosen format wants it ("kpsctl: error: …" on stderr, or a JSON
// document on stdout) and returns `exit_code`.
int fail(const Options& opt, int exit_code, std::string_view message);
// A line on stderr that is an error but not the end: "kpsctl: error: …".
void print_error(std::string_view message);
// `text` safe for one line on a terminal (lib/core/outside_text.hpp): controls, C1 controls, bidi
// overrides and bytes that are not UTF-8 escaped (an argument, a kpsd reply, an API answer or a
// database row may hold an escape sequence or a newline).
using kpsd::printable;
using kpsd::spreadsheet_safe;

// --watch: runs `once` every opt.watch_ms until interrupted; on a terminal the screen is
// cleared and titled each time, elsewhere each turn's output follows the last (a blank line
// between tables; CSV rows and JSON lines one after another). kpsd away (69) is shown and waited
// out; bad input (2) and no permission (77) end it with that code.
int watch(const Options& opt, const std::string& title, const std::function<int()>& once);

// Sends a request; a refused one (or one whose envelope does not parse) is reported through
// fail() and yields nullopt. The reply as kpsd sent it: --json prints it so.
std::optional<boost::json::object> ask(const Options& opt, ControlClient& client,
                                       const boost::json::object& req);

// What kpsctl says of a reply that does not parse as the one asked for (`why` names the field).
std::string bad_reply(std::string_view why);

// `reply` read as a `Reply`; one that does not parse is reported through fail() (one error
// line, exit 1 by the caller): nullopt.
template <class Reply>
std::optional<Reply> read_as(const Options& opt, const boost::json::object& reply) {
  auto out = parse_reply<Reply>(reply);
  if (!out) {
    fail(opt, exit_failed, bad_reply(out.error().message));
    return std::nullopt;
  }
  return std::move(*out);
}

// ask(), then read_as<Reply>(); `raw` (when given) gets the reply as sent, for --json.
template <class Reply>
std::optional<Reply> ask_for(const Options& opt, ControlClient& client,
                             const boost::json::object& req, boost::json::object* raw = nullptr) {
  auto reply = ask(opt, client, req);
  if (!reply) return std::nullopt;
  auto typed = read_as<Reply>(opt, *reply);
  if (typed && raw) *raw = std::move(*reply);
  return typed;
}

// JSON text with every whole number written as an integer (Boost.JSON writes 13.0 as 1.3E1)
// and other numbers in their shortest form.
std::string to_json_text(const boost::json::value& v);
void print_json(const boost::json::value& v);  // one line on stdout

// A CSV field: a leading ' when a spreadsheet would run it as a formula (spreadsheet_safe), then
// quoted when it must be (RFC 4180).
std::string csv_field(std::string_view text);

std::string format_time(std::int64_t unix_ms);  // RFC 3339 UTC; "-" for 0
// A reply's field as text to show: printable() (controls, C1, bidi escaped); "" when unset.
std::string text_of(const std::optional<std::string>& v);
std::string text_of(const std::optional<std::int64_t>& v);

// Jobs in state `s` of a reply's counts (0 when it has none).
std::int64_t count_of(const std::map<JobState, std::int64_t>& states, JobState s);

// Why a job ended as it did: its error, or the task's reason for a FAILED_* task.
std::string reason_of(const Job& job);

}  // namespace kpsd::ctl
