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

Result<json::object> parse_object(std::string_view body) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec) return fail(body.empty() ? "empty response body" : "response body is not JSON");
  if (!v.is_object()) return fail("response body is not a JSON object");
  return std::move(v.as_object());
}

// What kpsd keeps of a code, a status or a name from an answer.
constexpr std::size_t max_code_bytes = 64;

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

Result<AcceptedBody> parse_accepted_body(std::string_view body) {
  auto o = parse_object(body);
  if (!o) return o.error();
  AcceptedBody a;
  a.task_id = string_field(*o, "task_id");
  a.status = excerpt(string_field(*o, "status"), max_code_bytes);
  a.error_code = excerpt(string_field(*o, "error_code"), max_code_bytes);
  a.error_msg = excerpt(string_field(*o, "error_msg"));
  if (a.task_id.empty() && a.status != "FAILED") return fail("no task_id");
  // It becomes a URL path (GET tasks/{task_id}) sent with the credential: only a task id's shape.
  if (!a.task_id.empty() && !is_task_id(a.task_id)) {
    return fail("task_id `" + excerpt(a.task_id, 40) + "` (" + std::to_string(a.task_id.size()) +
                " bytes) is not a task id");
  }
  return a;
}

Result<TaskBody> parse_task_body(std::string_view body) {
  auto o = parse_object(body);
  if (!o) return o.error();
  TaskBody t;
  t.task_id = excerpt(string_field(*o, "task_id"), max_task_id_bytes);
  t.server_id = excerpt(string_field(*o, "server_id"), max_code_bytes);
  t.task_status = excerpt(string_field(*o, "task_status"), max_code_bytes);
  if (t.task_status.empty()) return fail("task response without task_status");
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

Result<TaskListPage> parse_task_list_body(std::string_view body) {
  auto o = parse_object(body);
  if (!o) return o.error();
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
  if (!tasks || !tasks->is_array()) return fail("task list response without a tasks array");
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

}  // namespace kpsd
