#include "ctl/job_lines.hpp"

#include "core/suggest.hpp"

#include <boost/json.hpp>

namespace kpsd {

namespace json = boost::json;

namespace {

// A field's value as an error quotes it: JSON text, at most 64 characters.
std::string quoted(const json::value& v) {
  std::string text = json::serialize(v);
  if (text.size() > 64) text = text.substr(0, 61) + "...";
  return "`" + text + "`";
}

}  // namespace

Result<JobLine> parse_job_line(std::string_view t) {
  JobLine out;
  if (!t.empty() && t.back() == '\r') t.remove_suffix(1);
  while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
  while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
  if (t.empty() || t.front() == '#') return out;
  out.kind = JobLine::Kind::job;
  if (t.front() != '{') {
    out.job.server_id = std::string(t);
    if (auto valid = validate_server_id(out.job.server_id); !valid) return valid.error();
    return out;
  }
  boost::system::error_code ec;
  json::value v = json::parse(t, ec);
  if (ec || !v.is_object()) return fail("not a JSON object");
  const json::object& o = v.as_object();
  static const std::vector<std::string> fields{"server_id", "port", "auth"};
  for (const auto& kv : o) {
    if (kv.key() != "server_id" && kv.key() != "port" && kv.key() != "auth") {
      std::string_view key = kv.key().substr(0, 64);
      return fail("unknown field `" + std::string(key) + "`" + did_you_mean(key, fields));
    }
  }
  if (auto* s = o.if_contains("server_id"); s && s->is_string()) {
    out.job.server_id = std::string(s->as_string());
  } else if (s) {
    return fail("server_id " + quoted(*s) + " is not a string");
  } else {
    return fail("server_id missing");
  }
  if (auto* p = o.if_contains("port")) {
    if (p->is_int64() && p->as_int64() >= 1 && p->as_int64() <= 65535) {
      out.job.port = p->as_int64();
    } else {
      return fail("port " + quoted(*p) + " must be a whole number from 1 to 65535");
    }
  }
  if (auto* a = o.if_contains("auth")) {
    const json::object* ao = a->if_object();
    const json::value* type = ao ? ao->if_contains("type") : nullptr;
    const json::value* key_file = ao ? ao->if_contains("key_file") : nullptr;
    if (!type || !type->is_string() || !key_file || !key_file->is_string()) {
      return fail("auth " + quoted(*a) +
                  " must be {\"type\": \"password\"|\"keypair\", \"key_file\": PATH}");
    }
    out.key_type = std::string(type->as_string());
    out.key_file = std::string(key_file->as_string());
  }
  if (auto valid = validate_server_id(out.job.server_id); !valid) return valid.error();
  return out;
}

}  // namespace kpsd
