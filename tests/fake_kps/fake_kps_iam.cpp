// Authentication as KPS checks it (X-Auth-Token, tokens of the fake IAM, AK/SK signatures),
// and the fake IAM on the same server: POST /v3/auth/tokens and GET /v3/projects.
#include "auth/aksk_signer.hpp"
#include "core/url.hpp"
#include "fake_kps_impl.hpp"

#include <algorithm>
#include <ctime>

namespace kpsd::fake {

namespace {

// "Access=..., SignedHeaders=..., Signature=..." (after the scheme) as name → value.
std::map<std::string, std::string> authorization_parts(const std::string& rest) {
  std::map<std::string, std::string> parts;
  for (std::size_t pos = 0; pos < rest.size();) {
    auto comma = rest.find(", ", pos);
    std::string item =
        rest.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    pos = comma == std::string::npos ? rest.size() : comma + 2;
    auto eq = item.find('=');
    if (eq != std::string::npos) parts[item.substr(0, eq)] = item.substr(eq + 1);
  }
  return parts;
}

// "" when X-Sdk-Date is well formed and within 15 minutes of now, else what is wrong.
std::string check_sdk_date(const std::string& date) {
  std::tm tm{};
  if (date.size() != 16 || !strptime(date.c_str(), "%Y%m%dT%H%M%SZ", &tm)) return "bad X-Sdk-Date";
  auto skew =
      std::chrono::system_clock::now() - std::chrono::system_clock::from_time_t(timegm(&tm));
  if (skew > std::chrono::minutes(15) || skew < -std::chrono::minutes(15))
    return "clock skew over 15 minutes";
  return {};
}

// The request as the signer saw it: method, path, query and the headers SignedHeaders names
// (their names into `names`).
SigningRequest signed_request(const http::request<http::string_body>& req,
                              const std::string& signed_names, std::set<std::string>& names) {
  SigningRequest s;
  s.method = std::string(req.method_string());
  std::string target(req.target());
  auto q = target.find('?');
  s.path = target.substr(0, q);
  s.query = q == std::string::npos ? "" : target.substr(q + 1);
  for (std::size_t pos = 0; pos <= signed_names.size();) {
    auto semi = signed_names.find(';', pos);
    std::string name =
        signed_names.substr(pos, semi == std::string::npos ? std::string::npos : semi - pos);
    pos = semi == std::string::npos ? signed_names.size() + 1 : semi + 1;
    if (name.empty()) continue;
    names.insert(name);
    s.headers.emplace_back(name, std::string(req[name]));
  }
  s.body = req.body();
  return s;
}

// "" when the headers that must be signed are, else the first that is not.
std::string check_signed_names(const std::set<std::string>& names, bool scoped, bool temporary_keys,
                               bool post) {
  for (const char* required : {"host", "x-sdk-date", "x-project-id"}) {
    if (!scoped && std::string_view(required) == "x-project-id") continue;
    if (!names.contains(required)) return std::string(required) + " is not signed";
  }
  if (temporary_keys && !names.contains("x-security-token"))
    return "x-security-token is not signed";
  if (post && !names.contains("content-type")) return "content-type is not signed";
  return {};
}

}  // namespace

// A 401 for a KPS call that is not authenticated (counted in auth_refusals), else nullopt.
std::optional<FakeKps::Impl::Response> FakeKps::Impl::refuse_unauthenticated(const Request& req) {
  auto refusal = check_auth(req);
  if (refusal.empty()) return std::nullopt;
  {
    std::lock_guard lock(mutex);
    ++auth_refusals;
  }
  return error(401, refusal == "expired" ? "APIGW.0307" : "APIGW.0301",
               refusal == "expired" ? "The token must be updated"
                                    : "Incorrect IAM authentication information",
               req.version(), req.keep_alive());
}

// Empty when the request is authenticated; "expired" for an issued token past its lifetime;
// anything else is a protocol violation (recorded).
std::string FakeKps::Impl::check_auth(const Request& req, bool scoped) {
  std::string target(req.target());
  if (!options.ak.empty()) {
    std::string why = check_signature(req, scoped);
    if (!why.empty() && why != "expired")
      violation("bad AK/SK signature on " + target + ": " + why);
    return why;
  }
  std::string token(req["X-Auth-Token"]);
  {
    std::lock_guard lock(mutex);
    largest_token = std::max(largest_token, token.size());
  }
  return check_token(token, target);
}

// check_auth for an X-Auth-Token: the fake IAM's tokens, or the method token.
std::string FakeKps::Impl::check_token(const std::string& token, const std::string& target) {
  std::lock_guard lock(mutex);
  if (options.iam) {
    auto it = issued.find(token);
    if (it == issued.end()) {
      violations.push_back("unknown IAM token on " + target);
      return "unknown";
    }
    if (std::chrono::steady_clock::now() >= it->second) {
      ++expired_rejections;
      return "expired";
    }
    return {};
  }
  if (token == accepted_token) return {};
  if (retired_tokens.contains(token)) {
    ++expired_rejections;
    return "expired";
  }
  violations.push_back("wrong or missing X-Auth-Token on " + target);
  return "wrong";
}

// Recomputes the SDK-HMAC-SHA256 signature from what arrived.
// `scoped`: a KPS call, which carries and signs X-Project-Id (an IAM lookup does not).
std::string FakeKps::Impl::check_signature(const Request& req, bool scoped) {
  std::string auth(req[http::field::authorization]);
  const std::string scheme = "SDK-HMAC-SHA256 ";
  if (!auth.starts_with(scheme)) return "no SDK-HMAC-SHA256 Authorization header";
  std::map<std::string, std::string> parts = authorization_parts(auth.substr(scheme.size()));
  std::string ak = parts["Access"], sk, security_token;
  {
    std::lock_guard lock(mutex);
    auto it = key_pairs.find(ak);
    if (it == key_pairs.end()) return "unknown access key";
    if (std::chrono::system_clock::now() >= it->second.valid_until) {
      ++expired_rejections;
      return "expired";
    }
    sk = it->second.sk;
    security_token = it->second.security_token;
  }
  if (req["X-Security-Token"] != security_token)
    return security_token.empty() ? "X-Security-Token sent with a permanent key pair"
                                  : "X-Security-Token missing or wrong";
  if (scoped && req["X-Project-Id"] != options.project_id) return "X-Project-Id missing or wrong";
  if (std::string why = check_sdk_date(std::string(req["X-Sdk-Date"])); !why.empty()) return why;
  std::set<std::string> names;
  SigningRequest s = signed_request(req, parts["SignedHeaders"], names);
  if (std::string why = check_signed_names(names, scoped, !security_token.empty(),
                                           req.method() == http::verb::post);
      !why.empty())
    return why;
  std::string expected = authorization_header(s, ak, Secret(sk));
  {
    std::lock_guard lock(mutex);
    ++signatures;
  }
  if (expected != auth) return "signature does not match";
  return {};
}

// IAM's GET /v3/projects?name=N (Keystone): the projects of options.projects named N, for a
// request authenticated as KPS calls are (an AK/SK signature here carries no X-Project-Id).
FakeKps::Impl::Response FakeKps::Impl::list_projects(const Request& req) {
  unsigned v = req.version();
  bool ka = req.keep_alive();
  std::string target(req.target());
  {
    std::lock_guard lock(mutex);
    ++project_lookups;
  }
  if (!req["X-Project-Id"].empty()) violation("X-Project-Id on an IAM project lookup");
  if (auto refusal = check_auth(req, false); !refusal.empty())
    return error(401, "APIGW.0301", "Incorrect IAM authentication information", v, ka);
  std::string name;
  if (auto q = target.find("?name="); q != std::string::npos)
    name = percent_decode(target.substr(q + 6));
  json::array list;
  for (const auto& [id, project_name] : options.projects) {
    if (name.empty() || project_name == name)
      list.push_back(json::object{{"id", id}, {"name", project_name}, {"enabled", true}});
  }
  return reply(200, json::object{{"projects", std::move(list)}}, v, ka);
}

// POST /v3/auth/tokens: a token for the password and scope options.iam names.
FakeKps::Impl::Response FakeKps::Impl::issue_token(const Request& req) {
  unsigned v = req.version();
  bool ka = req.keep_alive();
  boost::system::error_code ec;
  json::value body = json::parse(req.body(), ec);
  auto at = [&](std::initializer_list<std::string_view> path) -> std::string {
    const json::value* cur = &body;
    for (auto key : path) {
      if (!cur->is_object() || !cur->as_object().contains(key)) return {};
      cur = &cur->as_object().at(key);
    }
    return cur->is_string() ? std::string(cur->as_string()) : std::string{};
  };
  const IamOptions& iam = *options.iam;
  bool methods_ok = false;
  if (!ec && body.is_object()) {
    if (auto* m = body.as_object().if_contains("auth")) {
      if (m->is_object() && m->as_object().contains("identity")) {
        const json::value& id = m->as_object().at("identity");
        methods_ok = id.is_object() && id.as_object().contains("methods") &&
                     json::serialize(id.as_object().at("methods")) == "[\"password\"]";
      }
    }
  }
  if (ec || !methods_ok || at({"auth", "identity", "password", "user", "name"}) != iam.user ||
      at({"auth", "identity", "password", "user", "password"}) != iam.password ||
      at({"auth", "identity", "password", "user", "domain", "name"}) != iam.domain ||
      at({"auth", "scope", "project", "name"}) != iam.project) {
    violation("IAM token request with a wrong body or password");
    return error(401, "IAM.0001", "The username or password is wrong", v, ka);
  }
  std::string token;
  {
    std::lock_guard lock(mutex);
    token = "fake-iam-token-" + std::to_string(++tokens_issued) + "-";
    // A PKI token's size: base64-like filler after a unique prefix.
    while (token.size() < iam.token_bytes) token += static_cast<char>('A' + token.size() % 26);
    issued[token] = std::chrono::steady_clock::now() + iam.token_lifetime;
  }
  std::time_t expires = std::time(nullptr) + 24 * 3600;
  std::tm tm{};
  gmtime_r(&expires, &tm);
  char buf[40];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S.000000Z", &tm);
  Response res = reply(201,
                       json::object{{"token", json::object{{"expires_at", buf},
                                                           {"methods", json::array{"password"}}}}},
                       v, ka);
  res.set("X-Subject-Token", token);
  return res;
}

void FakeKps::set_token(std::string token) {
  std::lock_guard lock(impl_->mutex);
  impl_->retired_tokens.insert(impl_->accepted_token);
  impl_->accepted_token = std::move(token);
}

void FakeKps::set_aksk(std::string ak, std::string sk, std::string security_token) {
  std::lock_guard lock(impl_->mutex);
  auto now = std::chrono::system_clock::now();
  for (auto& [old_ak, pair] : impl_->key_pairs) pair.valid_until = std::min(pair.valid_until, now);
  impl_->key_pairs[ak] = {std::move(sk), std::move(security_token),
                          std::chrono::system_clock::time_point::max()};
}

void FakeKps::accept_aksk(std::string ak, std::string sk, std::string security_token,
                          std::chrono::system_clock::time_point valid_until) {
  std::lock_guard lock(impl_->mutex);
  impl_->key_pairs[ak] = {std::move(sk), std::move(security_token), valid_until};
}

}  // namespace kpsd::fake
