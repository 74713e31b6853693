#include "auth/credential_answers.hpp"

#include "core/clock.hpp"
#include "core/zeroing_storage.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <cctype>
#include <ctime>

namespace kpsd {

namespace json = boost::json;
using SysClock = std::chrono::system_clock;

std::optional<SysClock::time_point> parse_expires_at(std::string_view text) {
  // YYYY-MM-DDTHH:MM:SS, then an optional .fraction, then Z.
  if (text.size() < 20 || text.back() != 'Z') return std::nullopt;
  std::string head(text.substr(0, 19));
  std::tm tm{};
  const char* end = strptime(head.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (!end || *end != '\0') return std::nullopt;
  std::string_view rest = text.substr(19, text.size() - 20);
  std::chrono::microseconds fraction{0};
  if (!rest.empty()) {
    if (rest.front() != '.' || rest.size() < 2 || rest.size() > 10) return std::nullopt;
    std::int64_t scale = 1000000, value = 0;
    std::string_view digits = rest.substr(1);
    for (std::size_t i = 0; i < digits.size(); ++i) {
      if (!std::isdigit(static_cast<unsigned char>(digits[i]))) return std::nullopt;
      if (i >= 6) continue;  // below a microsecond
      value = value * 10 + (digits[i] - '0');
      scale /= 10;
    }
    fraction = std::chrono::microseconds(value * scale);
  }
  // Before 1970 or past 2191 is not an expiry (and past 2262 overflows the clock's nanoseconds).
  std::time_t seconds = timegm(&tm);
  if (seconds < 0 || seconds > 7'000'000'000) return std::nullopt;
  return SysClock::from_time_t(seconds) + fraction;
}

Result<MetadataCredential> parse_securitykey_body(std::string_view body) {
  boost::system::error_code ec;
  // Zeroing storage: the tree and the parser's scratch hold the secret key and token.
  json::value v = parse_json_zeroing(body, ec);
  json::object* credential = nullptr;
  if (!ec && v.is_object()) {
    if (auto* c = v.as_object().if_contains("credential"); c && c->is_object())
      credential = &c->as_object();
  }
  if (!credential) return fail("the answer is not {\"credential\": {...}}");
  auto field = [&](const char* name) -> const json::string* {
    auto* f = credential->if_contains(name);
    return f && f->is_string() && !f->as_string().empty() ? &f->as_string() : nullptr;
  };
  for (const char* name : {"access", "secret", "securitytoken", "expires_at"}) {
    if (!field(name))
      return fail(std::string("credential.") + name + " is missing, empty or not a string");
  }
  auto expires = parse_expires_at(*field("expires_at"));
  if (!expires)
    return fail("credential.expires_at is not a UTC time like 2020-01-08T03:50:07.574000Z");
  MetadataCredential out;
  out.keys.access_key = Secret(std::string(*field("access")));
  out.keys.secret_key = Secret(std::string(*field("secret")));
  out.keys.security_token = Secret(std::string(*field("securitytoken")));
  out.expires_at = *expires;
  return out;
}

std::optional<std::chrono::system_clock::time_point> parse_iam_token_expiry(std::string_view body) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec || !v.is_object()) return std::nullopt;
  auto* t = v.as_object().if_contains("token");
  if (!t || !t->is_object()) return std::nullopt;
  auto* e = t->as_object().if_contains("expires_at");
  if (!e || !e->is_string()) return std::nullopt;
  std::tm tm{};
  std::string text(e->as_string().subview().substr(0, 19));
  const char* end = strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (!end || *end != '\0') return std::nullopt;
  return utc_time_point(tm);
}

SysClock::time_point refresh_time(SysClock::time_point fetched, SysClock::time_point expires) {
  auto life = expires - fetched;
  auto ahead = std::min<SysClock::duration>(std::chrono::hours(2), life / 2);
  return expires - ahead;
}

Result<std::vector<ProjectMatch>> matching_projects(std::string_view body,
                                                    std::string_view region) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  const json::array* projects = nullptr;
  if (!ec && v.is_object()) {
    if (auto* p = v.as_object().if_contains("projects"); p && p->is_array())
      projects = &p->as_array();
  }
  if (!projects) return fail("the answer is not {\"projects\": [...]}");
  std::vector<ProjectMatch> out;
  for (const auto& p : *projects) {
    if (!p.is_object()) continue;
    auto* id = p.as_object().if_contains("id");
    auto* name = p.as_object().if_contains("name");
    if (!id || !name || !id->is_string() || !name->is_string()) continue;
    if (name->as_string() != region) continue;
    out.push_back({std::string(id->as_string()), std::string(name->as_string())});
  }
  return out;
}

}  // namespace kpsd
