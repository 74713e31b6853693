#include "ctl/output.hpp"

#include "ctl/durations.hpp"

#include <boost/json.hpp>

#include <charconv>
#include <chrono>
#include <cmath>
#include <ctime>
#include <iostream>
#include <thread>
#include <unistd.h>

namespace kpsd::ctl {

namespace json = boost::json;

int fail(const Options& opt, int exit_code, std::string_view message) {
  if (opt.json()) {
    print_json(
        json::object{{"ok", false}, {"error", printable(message)}, {"exit_code", exit_code}});
  } else {
    print_error(message);
  }
  return exit_code;
}

void print_error(std::string_view message) {
  std::cerr << "kpsctl: error: " << printable(message) << "\n";
}

int watch(const Options& opt, const std::string& title, const std::function<int()>& once) {
  const bool tty = ::isatty(STDOUT_FILENO) == 1;
  const auto every = std::chrono::milliseconds(opt.watch_ms.value_or(2000));
  for (bool first = true;; first = false) {
    if (tty) {
      auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::system_clock::now().time_since_epoch());
      std::cout << "\033[H\033[2J"
                << "every " << format_duration_ms(every.count()) << ": " << title << "   "
                << format_time(now.count()) << "\n\n";
    } else if (!first && opt.format == Format::table) {
      std::cout << "\n";  // tables apart; CSV rows and JSON lines follow each other
    }
    int rc = once();
    std::cout << std::flush;
    if (rc == exit_cli_usage || rc == exit_no_perm) return rc;
    std::this_thread::sleep_for(every);
  }
}

std::optional<json::object> ask(const Options& opt, ControlClient& client,
                                const json::object& req) {
  json::object reply = client.request(req);
  auto envelope = parse_reply<ReplyEnvelope>(reply);
  if (!envelope) {
    fail(opt, exit_failed, bad_reply(envelope.error().message));
    return std::nullopt;
  }
  if (!envelope->ok) {
    fail(opt, exit_failed, "kpsd refused the request: " + printable(envelope->error));
    return std::nullopt;
  }
  return reply;
}

std::string bad_reply(std::string_view why) {
  // A kpsd and a kpsctl of different versions, most likely: say which field, not a crash.
  return "kpsd sent a reply kpsctl cannot read: " + std::string(why);
}

namespace {
void write_json(std::string& out, const json::value& v) {
  switch (v.kind()) {
    case json::kind::object: {
      out += '{';
      bool first = true;
      for (const auto& kv : v.as_object()) {
        if (!first) out += ',';
        first = false;
        out += json::serialize(json::string_view(kv.key()));
        out += ':';
        write_json(out, kv.value());
      }
      out += '}';
      return;
    }
    case json::kind::array: {
      out += '[';
      bool first = true;
      for (const auto& e : v.as_array()) {
        if (!first) out += ',';
        first = false;
        write_json(out, e);
      }
      out += ']';
      return;
    }
    case json::kind::double_: {
      double d = v.as_double();
      char buf[32];
      if (!std::isfinite(d)) {
        out += "null";
        return;
      }
      if (std::trunc(d) == d && std::fabs(d) < 9007199254740992.0) {
        auto r = std::to_chars(buf, buf + sizeof(buf), static_cast<std::int64_t>(d));
        out.append(buf, r.ptr);
        return;
      }
      auto r = std::to_chars(buf, buf + sizeof(buf), d);  // shortest round-trip form
      out.append(buf, r.ptr);
      return;
    }
    default:
      out += json::serialize(v);
  }
}

// Boost.JSON escapes C0 controls; a terminal would still act on DEL, a C1 control or a bidi
// override inside a string: those become \uXXXX too (still the same JSON value).
std::string terminal_safe_json(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  auto hex4 = [&out](unsigned cp) {
    static const char* hex = "0123456789abcdef";
    out += "\\u";
    for (int shift = 12; shift >= 0; shift -= 4) out += hex[(cp >> shift) & 15];
  };
  for (std::size_t i = 0; i < text.size(); ++i) {
    auto b = [&](std::size_t k) { return static_cast<unsigned char>(text[i + k]); };
    std::size_t left = text.size() - i;
    if (b(0) == 0x7f) {
      hex4(0x7f);
    } else if (left >= 2 && b(0) == 0xc2 && b(1) >= 0x80 && b(1) <= 0x9f) {
      hex4(b(1));
      ++i;
    } else if (left >= 3 && b(0) == 0xe2 &&
               ((b(1) == 0x80 && b(2) >= 0xaa && b(2) <= 0xae) ||
                (b(1) == 0x81 && b(2) >= 0xa6 && b(2) <= 0xa9))) {
      hex4(0x2000u + ((b(1) & 0x3fu) << 6) + (b(2) & 0x3fu));
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}
}  // namespace

std::string to_json_text(const json::value& v) {
  std::string out;
  write_json(out, v);
  return terminal_safe_json(out);
}

void print_json(const json::value& v) { std::cout << to_json_text(v) << "\n"; }

std::string csv_field(std::string_view raw) {
  // Not a formula in a spreadsheet (a cell starting =, +, -, @ ...), then RFC 4180's quoting.
  std::string text = spreadsheet_safe(raw);
  if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
  std::string out = "\"";
  for (char c : text) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string format_time(std::int64_t ms) {
  if (ms <= 0) return "-";
  std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string text_of(const std::optional<std::string>& v) {
  // Every cell of every table, CSV row and `show` line comes through here: a server id, a
  // reason or a task status from the API or the database is shown, never obeyed (issue 31).
  return v ? printable(*v) : std::string();
}

std::string text_of(const std::optional<std::int64_t>& v) {
  return v ? std::to_string(*v) : std::string();
}

std::int64_t count_of(const std::map<JobState, std::int64_t>& states, JobState s) {
  auto it = states.find(s);
  return it == states.end() ? 0 : it->second;
}

std::string reason_of(const Job& j) {
  std::string reason = text_of(j.error_code);
  std::string msg = text_of(j.error_msg);
  if (!msg.empty()) reason += (reason.empty() ? "" : " ") + msg;
  std::string task = text_of(j.task_error_code);
  std::string task_msg = text_of(j.task_error_msg);
  if (!task_msg.empty()) task += (task.empty() ? "" : " ") + task_msg;
  if (!task.empty()) reason += (reason.empty() ? "" : "; ") + ("task: " + task);
  return reason;
}

}  // namespace kpsd::ctl
