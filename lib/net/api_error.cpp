#include "net/api_error.hpp"

#include "core/outside_text.hpp"

#include <boost/json.hpp>

namespace kpsd {
namespace json = boost::json;

std::string string_field(const json::object& o, std::string_view key) {
  if (auto* v = o.if_contains(key); v && v->is_string()) return std::string(v->as_string());
  return {};
}

ApiErrorBody parse_error_body(std::string_view body) {
  ApiErrorBody e;
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec || !v.is_object()) return e;
  const json::object& o = v.as_object();
  e.code = string_field(o, "error_code");
  e.message = string_field(o, "error_msg");
  if (e.code.empty()) e.code = string_field(o, "code");
  if (e.message.empty()) e.message = string_field(o, "message");
  // From outside, wherever it goes next (a job's row, a log line, STATUS=, --check-config's
  // output): escaped and capped here, at a character (issue 31).
  e.code = printable_capped(e.code, 64);
  e.message = printable_capped(e.message, 500);
  return e;
}

}  // namespace kpsd
