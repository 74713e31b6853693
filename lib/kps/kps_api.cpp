#include "kps/kps_api.hpp"

#include "core/clock.hpp"
#include "core/outside_text.hpp"
#include "core/zeroing_storage.hpp"

#include <boost/json.hpp>

#include <openssl/crypto.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <ctime>

namespace kpsd {
namespace json = boost::json;

namespace {

std::string string_field(const json::object& o, std::string_view key) {
  if (auto* v = o.if_contains(key); v && v->is_string()) return std::string(v->as_string());
  return {};
}

std::optional<json::object> parse_object(std::string_view body, std::string& why) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec) {
    why = body.empty() ? "empty response body" : "response body is not JSON";
    return std::nullopt;
  }
  if (!v.is_object()) {
    why = "response body is not a JSON object";
    return std::nullopt;
  }
  return std::move(v.as_object());
}

// A short, printable excerpt of a server's message for error_msg (no control characters).
// What kpsd keeps of a code, a status or a name from an answer, and of a message.
constexpr std::size_t max_code_bytes = 64;

std::string excerpt(std::string_view s, std::size_t max = 200) {
  std::size_t cut = std::min(max, s.size());
  // At a character's start: a cut inside one would leave bytes that are not UTF-8, which
  // kpsctl's JSON reader refuses (Huawei's messages are often Chinese).
  while (cut > 0 && cut < s.size() && (static_cast<unsigned char>(s[cut]) & 0xc0) == 0x80) --cut;
  std::string out;
  for (char c : s.substr(0, cut)) out += (static_cast<unsigned char>(c) < 0x20) ? ' ' : c;
  if (s.size() > cut) out += "...";
  return out;
}

}  // namespace

std::string make_disassociate_body(std::string_view server_id, std::optional<std::int64_t> port,
                                   const JobAuth* auth) {
  // The key passes through here: every buffer that holds it is zeroed before it is freed (the
  // JSON values' zeroing storage; the body, which the caller cleanses after the call, is
  // reserved once, so no smaller copy is left behind by a reallocation).
  json::storage_ptr zeroing = zeroing_storage();
  json::object server(zeroing);
  server["id"] = server_id;
  if (port) server["port"] = *port;
  std::size_t key_size = 0;
  if (auth) {
    json::object a(zeroing);
    a["type"] = auth->type;
    a["key"] = auth->key.reveal();
    key_size = auth->key.reveal().size();
    server["auth"] = std::move(a);
  }
  json::object root(zeroing);
  root["server"] = std::move(server);
  std::string body;
  body.reserve(256 + server_id.size() * 6 + key_size * 6);  // \uXXXX at worst
  json::serializer serializer;
  serializer.reset(&root);
  char chunk[512];
  while (!serializer.done()) body.append(serializer.read(chunk));
  OPENSSL_cleanse(chunk, sizeof(chunk));
  return body;
}

bool is_task_id(std::string_view id) noexcept {
  if (id.empty() || id.size() > max_task_id_bytes || id.front() == '.') return false;
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || c == ':';
    if (!ok) return false;
  }
  return true;
}

std::optional<AcceptedBody> parse_accepted_body(std::string_view body, std::string& why) {
  auto o = parse_object(body, why);
  if (!o) return std::nullopt;
  AcceptedBody a;
  a.task_id = string_field(*o, "task_id");
  a.status = excerpt(string_field(*o, "status"), max_code_bytes);
  a.error_code = excerpt(string_field(*o, "error_code"), max_code_bytes);
  a.error_msg = excerpt(string_field(*o, "error_msg"));
  if (a.task_id.empty() && a.status != "FAILED") {
    why = "no task_id";
    return std::nullopt;
  }
  // It becomes a URL path (GET tasks/{task_id}) sent with the credential: only a task id's shape.
  if (!a.task_id.empty() && !is_task_id(a.task_id)) {
    why = "task_id `" + excerpt(a.task_id, 40) + "` (" + std::to_string(a.task_id.size()) +
          " bytes) is not a task id";
    return std::nullopt;
  }
  return a;
}

std::optional<TaskBody> parse_task_body(std::string_view body, std::string& why) {
  auto o = parse_object(body, why);
  if (!o) return std::nullopt;
  TaskBody t;
  t.task_id = excerpt(string_field(*o, "task_id"), max_task_id_bytes);
  t.server_id = excerpt(string_field(*o, "server_id"), max_code_bytes);
  t.task_status = excerpt(string_field(*o, "task_status"), max_code_bytes);
  if (t.task_status.empty()) {
    why = "task response without task_status";
    return std::nullopt;
  }
  return t;
}

namespace {

// task_time as the SDKs write it: a decimal string ("1764500000000") or a JSON integer.
std::optional<std::int64_t> task_time_raw(const json::object& t) {
  const json::value* v = t.if_contains("task_time");
  if (!v) return std::nullopt;
  if (v->is_int64()) return v->as_int64() >= 0 ? std::optional(v->as_int64()) : std::nullopt;
  if (v->is_uint64() && v->as_uint64() <= static_cast<std::uint64_t>(INT64_MAX))
    return static_cast<std::int64_t>(v->as_uint64());
  if (!v->is_string()) return std::nullopt;
  std::string_view s = v->as_string();
  std::int64_t n = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (ec != std::errc() || end != s.data() + s.size() || n < 0) return std::nullopt;
  return n;
}

// task_time in ms. The SDK models do not say the unit: a value below 1e11 cannot be ms of any
// time after 1973, so it is read as seconds.
std::optional<std::int64_t> task_time_field(const json::object& t) {
  auto n = task_time_raw(t);
  if (n && *n < 100'000'000'000 && *n <= INT64_MAX / 1000) *n *= 1000;
  return n;
}

}  // namespace

std::optional<TaskListPage> parse_task_list_body(std::string_view body, std::string& why) {
  auto o = parse_object(body, why);
  if (!o) return std::nullopt;
  TaskListPage page;
  // Only an exact, non-negative integer counts; 1.5, 1e30 or -3 leave it unknown (never a
  // throwing conversion: a bad number in a body is the server's fault, not kpsd's end).
  if (auto* total = o->if_contains("total")) {
    if (total->is_int64() && total->as_int64() >= 0) {
      page.total = total->as_int64();
    } else if (total->is_uint64() && total->as_uint64() <= static_cast<std::uint64_t>(INT64_MAX)) {
      page.total = static_cast<std::int64_t>(total->as_uint64());
    }
  }
  auto* tasks = o->if_contains("tasks");
  if (!tasks || !tasks->is_array()) {
    why = "task list response without a tasks array";
    return std::nullopt;
  }
  for (const json::value& v : tasks->as_array()) {
    if (!v.is_object()) continue;
    const json::object& t = v.as_object();
    TaskListEntry e;
    e.task_id = string_field(t, "task_id");
    if (e.task_id.empty()) continue;
    if (!is_task_id(e.task_id)) {  // kept, to be seen; never followed
      e.followable = false;
      e.task_id = printable_capped(e.task_id, 40);
    }
    e.server_id = excerpt(string_field(t, "server_id"), max_code_bytes);
    e.error_code = excerpt(string_field(t, "task_error_code"), max_code_bytes);
    e.error_msg = excerpt(string_field(t, "task_error_msg"));
    e.operate_type = excerpt(string_field(t, "operate_type"), max_code_bytes);
    e.task_time_ms = task_time_field(t);
    page.tasks.push_back(std::move(e));
  }
  return page;
}

TaskPhase task_phase(std::string_view s) noexcept {
  if (s.starts_with("SUCCESS_")) return TaskPhase::succeeded;
  if (s.starts_with("FAILED_")) return TaskPhase::failed;
  return TaskPhase::pending;
}

std::optional<std::chrono::milliseconds> parse_retry_after(
    std::string_view value, std::chrono::system_clock::time_point now) {
  while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  while (!value.empty() && value.back() == ' ') value.remove_suffix(1);
  if (value.empty()) return std::nullopt;
  bool digits = true;
  for (char c : value) digits = digits && c >= '0' && c <= '9';
  if (digits) {
    if (value.size() > 9) return std::chrono::hours(24 * 365);  // absurd: treat as "very long"
    return std::chrono::seconds(std::stoll(std::string(value)));
  }
  // HTTP-date (RFC 9110 5.6.7): IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT", and the two
  // obsolete forms a recipient must also accept: RFC 850 "Sunday, 06-Nov-94 08:49:37 GMT" and
  // asctime "Sun Nov  6 08:49:37 1994".
  std::string text(value);
  for (const char* format :
       {"%a, %d %b %Y %H:%M:%S GMT", "%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"}) {
    std::tm tm{};
    const char* end = strptime(text.c_str(), format, &tm);
    if (!end || *end != '\0') continue;
    auto when = utc_time_point(tm);
    if (!when) return std::nullopt;
    auto at = *when;
    if (at <= now) return std::chrono::milliseconds(0);
    return std::chrono::duration_cast<std::chrono::milliseconds>(at - now);
  }
  return std::nullopt;
}

std::string_view to_string(Verdict v) noexcept {
  switch (v) {
    case Verdict::delivered:
      return "delivered";
    case Verdict::retryable:
      return "retryable";
    case Verdict::permanent:
      return "permanent";
    case Verdict::throttled:
      return "throttled";
    case Verdict::reauthenticate:
      return "reauthenticate";
    case Verdict::blocked:
      return "blocked";
    case Verdict::unknown:
      return "unknown";
  }
  return "unknown";
}

std::string_view blocked_cause(HttpResult::Transport t) noexcept {
  switch (t) {
    case HttpResult::Transport::tls_failed:
      return "tls";
    case HttpResult::Transport::no_credentials:
      return "credentials";
    case HttpResult::Transport::no_descriptors:
      return "descriptors";
    case HttpResult::Transport::proxy_refused:
      return "proxy";
    default:
      return "";
  }
}

PollOutcome classify_task_poll(const HttpResult& r, std::string task_id) {
  PollOutcome p;
  p.task_id = std::move(task_id);
  if (r.transport != HttpResult::Transport::ok) {
    p.error_msg = r.transport_detail;
  } else if (r.status == 200 && !readable_coding(r.content_encoding)) {
    p.error_msg = "answer in content coding " + excerpt(r.content_encoding, 40);
  } else if (r.status == 200) {
    std::string why;
    if (auto body = parse_task_body(r.body, why)) {
      p.kind = PollOutcome::Kind::answered;
      p.task_status = body->task_status;
    } else {
      p.error_msg = why;
    }
  } else if (r.status == 401 || r.status == 429 || r.status >= 500) {
    p.error_msg = "HTTP " + std::to_string(r.status);
  } else {
    p.kind = PollOutcome::Kind::rejected;
    ApiErrorBody err = parse_error_body(r.body);
    p.error_code = err.code;
    p.error_msg = "HTTP " + std::to_string(r.status) +
                  (err.message.empty() ? "" : ": " + excerpt(err.message));
  }
  return p;
}

std::string_view poll_label(const PollOutcome& p) noexcept {
  if (p.kind == PollOutcome::Kind::rejected) return "rejected";
  if (p.kind == PollOutcome::Kind::no_answer) return "no_answer";
  switch (task_phase(p.task_status)) {
    case TaskPhase::succeeded:
      return "succeeded";
    case TaskPhase::failed:
      return "failed";
    case TaskPhase::pending:
      break;
  }
  return "pending";
}

namespace {

// A 2xx to a disassociate: the gateway took the call (the API documents 202; a 200 or 201 from
// another gateway or version means the same). With a task id it is delivered; without one the
// server may be unbinding now, so the outcome is unknown: looked for before any second call.
AttemptOutcome classify_accepted(const HttpResult& r, AttemptOutcome out) {
  const std::string status = std::to_string(r.status);
  if (!readable_coding(r.content_encoding)) {
    out.verdict = Verdict::unknown;
    out.error_msg = "answer in content coding " + excerpt(r.content_encoding, 40) + " (HTTP " +
                    status + "): kpsd asked for identity and cannot read it";
    return out;
  }
  std::string why;
  auto body = parse_accepted_body(r.body, why);
  if (!body) {
    out.verdict = Verdict::unknown;
    out.error_msg = status + " with an unreadable body: " + why;
    return out;
  }
  out.task_id = body->task_id;
  out.delivery_status = body->status;
  out.error_code = body->error_code;
  out.error_msg = body->error_msg;
  if (body->status == "FAILED") {
    out.verdict = Verdict::retryable;
    if (out.error_msg.empty())
      out.error_msg = "task delivery failed (" + status + " with status FAILED)";
  } else {
    out.verdict = Verdict::delivered;
  }
  return out;
}

}  // namespace

bool readable_coding(std::string_view content_encoding) noexcept {
  while (!content_encoding.empty() &&
         (content_encoding.front() == ' ' || content_encoding.front() == '\t'))
    content_encoding.remove_prefix(1);
  while (!content_encoding.empty() &&
         (content_encoding.back() == ' ' || content_encoding.back() == '\t'))
    content_encoding.remove_suffix(1);
  if (content_encoding.empty()) return true;
  if (content_encoding.size() != 8) return false;
  for (std::size_t i = 0; i < 8; ++i) {
    if (std::tolower(static_cast<unsigned char>(content_encoding[i])) != "identity"[i])
      return false;
  }
  return true;
}

AttemptOutcome classify_disassociate(const HttpResult& r,
                                     std::chrono::system_clock::time_point now) {
  AttemptOutcome out;
  if (r.transport == HttpResult::Transport::tls_failed ||
      r.transport == HttpResult::Transport::no_credentials ||
      r.transport == HttpResult::Transport::no_descriptors ||
      r.transport == HttpResult::Transport::proxy_refused) {
    out.verdict = Verdict::blocked;
    out.error_msg = r.transport_detail;
    return out;
  }
  if (r.transport != HttpResult::Transport::ok) {
    // Sent in full and then no readable answer: the server may have acted. Never a refusal.
    out.verdict = r.request_sent ? Verdict::unknown : Verdict::retryable;
    if (r.request_sent && r.transport == HttpResult::Transport::io_error) {
      out.error_msg = "answer unreadable after send: " + r.transport_detail;
      return out;
    }
    switch (r.transport) {
      case HttpResult::Transport::connect_failed:
        out.error_msg = "connect failed: ";
        break;
      case HttpResult::Transport::timed_out:
        out.error_msg = "timed out: ";
        break;
      default:
        out.error_msg = "connection error: ";
        break;
    }
    out.error_msg += r.transport_detail;
    return out;
  }
  out.http_status = r.status;
  out.request_id = r.request_id;
  out.retry_after = parse_retry_after(r.retry_after, now);

  if (r.status >= 200 && r.status < 300) return classify_accepted(r, std::move(out));
  ApiErrorBody err = parse_error_body(r.body);
  out.error_code = err.code;
  out.error_msg = err.message.empty() ? "HTTP " + std::to_string(r.status) : excerpt(err.message);
  if (r.status == 429) {
    out.verdict = Verdict::throttled;
  } else if (r.status == 401) {
    out.verdict = Verdict::reauthenticate;
  } else if (r.status >= 500) {
    out.verdict = Verdict::retryable;
  } else if (r.status >= 400) {
    out.verdict = Verdict::permanent;
  } else {
    // 1xx, 3xx: not what the API promises, and no gateway acts on a request it redirects.
    out.verdict = Verdict::retryable;
    out.error_msg = "unexpected HTTP " + std::to_string(r.status);
  }
  return out;
}

}  // namespace kpsd
