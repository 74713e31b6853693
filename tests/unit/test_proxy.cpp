// Proxy choice (lib/config/proxy.hpp) against curl's documented rules: which variable for which
// scheme, no_proxy's forms, the precedence of kps.proxy, and URLs that must be refused.
#include "config/proxy.hpp"
#include "result_strings.hpp"

#include <doctest/doctest.h>

#include <map>

using namespace kpsd;

namespace {

Endpoint endpoint(const std::string& url) {
  auto e = parse_endpoint(url);
  REQUIRE(e);
  return *e;
}

struct Env {
  std::map<std::string, std::string> vars;
  EnvLookup lookup() const {
    return [this](const char* name) -> const char* {
      auto it = vars.find(name);
      return it == vars.end() ? nullptr : it->second.c_str();
    };
  }
};

// "host:port" of the proxy chosen, or "direct".
std::string route_for(const std::string& configured, const std::string& url, const Env& env) {
  auto r = choose_proxy(configured, endpoint(url), env.lookup());
  REQUIRE_MESSAGE(r, (r ? "" : r.error().message));
  CHECK(!r->why.empty());
  return r->route ? r->route->text() : "direct";
}

}  // namespace

TEST_CASE("proxy URLs: the port defaults to 1080 - credentials only from the environment") {
  auto r = parse_proxy_url("http://proxy.corp:3128", false);
  REQUIRE(r);
  CHECK(r->text() == "proxy.corp:3128");
  CHECK(r->credentials.empty());
  r = parse_proxy_url("proxy.corp", false);  // no scheme: http, as curl
  REQUIRE(r);
  CHECK(r->text() == "proxy.corp:1080");
  r = parse_proxy_url("http://[::1]:8080/", false);
  REQUIRE(r);
  CHECK(r->host == "::1");
  CHECK(r->text() == "[::1]:8080");

  r = parse_proxy_url("http://alice:p%40ss@10.0.0.1:3128", true);
  REQUIRE(r);
  CHECK(r->credentials.reveal() == "alice:p@ss");
  CHECK(proxy_authorization(*r).reveal() == "Basic YWxpY2U6cEBzcw==");  // base64("alice:p@ss")

  // The refusal's words, "" when the URL was taken.
  auto refusal = [](std::string_view url) {
    auto refused = parse_proxy_url(url, false);
    return refused ? std::string() : refused.error().message;
  };
  std::string error = refusal("http://alice:s3cret@10.0.0.1:3128");
  CHECK(error.find("kps.proxy_credentials_file") != std::string::npos);
  CHECK(error.find("s3cret") == std::string::npos);  // the refused URL is shown without it
  CHECK(refusal("https://proxy:443").find("not an http://") != std::string::npos);
  CHECK(refusal("socks5://proxy:1080").find("not an http://") != std::string::npos);
  CHECK(refusal("http://proxy:0").find("invalid port") != std::string::npos);
  CHECK(refusal("http://proxy:99999").find("invalid port") != std::string::npos);
  CHECK(refusal("http://proxy:3128/path").find("path") != std::string::npos);
  CHECK(refusal("http://:3128").find("no valid host") != std::string::npos);
  CHECK(refusal("http://pro xy:3128").find("no valid host") != std::string::npos);
}

TEST_CASE("no_proxy as libcurl reads it") {
  // Names: the host itself and its subdomains, a leading dot ignored, case-insensitive.
  CHECK(no_proxy_matches("myhuaweicloud.com", "kms.cn-north-4.myhuaweicloud.com"));
  CHECK(no_proxy_matches(".myhuaweicloud.com", "kms.cn-north-4.myhuaweicloud.com"));
  CHECK(no_proxy_matches("MyHuaweiCloud.COM", "kms.cn-north-4.myhuaweicloud.com"));
  CHECK(no_proxy_matches("myhuaweicloud.com", "myhuaweicloud.com"));
  CHECK_FALSE(no_proxy_matches("huaweicloud.com", "kms.cn-north-4.myhuaweicloud.com"));
  CHECK_FALSE(no_proxy_matches("cloud.com", "myhuaweicloud.com"));
  // Lists, spaces, ports, and "*".
  CHECK(no_proxy_matches("localhost, internal.corp ,127.0.0.1", "internal.corp"));
  CHECK(no_proxy_matches("internal.corp:8443", "internal.corp"));
  CHECK(no_proxy_matches("*", "anything.example"));
  CHECK(no_proxy_matches(" * ", "anything.example"));
  CHECK_FALSE(no_proxy_matches("localhost,*", "anything.example"));  // "*" only as the whole
  CHECK(no_proxy_matches("example.com.", "kms.example.com"));        // trailing dots ignored
  CHECK(no_proxy_matches("example.com", "kms.example.com."));
  CHECK_FALSE(no_proxy_matches("*.corp", "a.corp.example"));
  CHECK_FALSE(no_proxy_matches("", "kms.example"));
  CHECK_FALSE(no_proxy_matches(",,", "kms.example"));
  // Addresses: exactly, or in a CIDR block; a name never matches an address entry.
  CHECK(no_proxy_matches("127.0.0.1", "127.0.0.1"));
  CHECK_FALSE(no_proxy_matches("127.0.0.1", "127.0.0.2"));
  CHECK(no_proxy_matches("10.0.0.0/8", "10.20.30.40"));
  CHECK_FALSE(no_proxy_matches("10.0.0.0/8", "11.0.0.1"));
  CHECK(no_proxy_matches("192.168.1.0/24", "192.168.1.200"));
  CHECK_FALSE(no_proxy_matches("192.168.1.0/24", "192.168.2.1"));
  CHECK(no_proxy_matches("::1", "::1"));
  CHECK(no_proxy_matches("fd00::/8", "fd12:3456::1"));
  CHECK_FALSE(no_proxy_matches("10.0.0.0/8", "kms.example"));
  CHECK_FALSE(no_proxy_matches("10.0.0.0/33", "10.0.0.1"));  // not a block: no match
}

TEST_CASE("proxy precedence: kps.proxy - none - then the environment as curl") {
  Env env;
  env.vars = {{"https_proxy", "http://lower:3128"},
              {"HTTPS_PROXY", "http://upper:3128"},
              {"http_proxy", "http://plain:3128"},
              {"HTTP_PROXY", "http://cgi-injected:3128"},
              {"all_proxy", "http://all:3128"}};
  // kps.proxy set: the environment is not read; none: direct.
  CHECK(route_for("http://configured:8080", "https://kms.example", env) == "configured:8080");
  CHECK(route_for("none", "https://kms.example", env) == "direct");
  // Unset: the lower-case form first, the scheme's variable before all_proxy.
  CHECK(route_for("", "https://kms.example", env) == "lower:3128");
  env.vars.erase("https_proxy");
  CHECK(route_for("", "https://kms.example", env) == "upper:3128");
  // http targets: http_proxy only in lower case (HTTP_PROXY may come from a CGI header).
  CHECK(route_for("", "http://kms.example", env) == "plain:3128");
  env.vars.erase("http_proxy");
  CHECK(route_for("", "http://kms.example", env) == "all:3128");
  env.vars.erase("all_proxy");
  CHECK(route_for("", "http://kms.example", env) == "direct");
  // no_proxy bypasses the environment's proxy (lower case wins over upper case).
  env.vars["NO_PROXY"] = "kms.example";
  CHECK(route_for("", "https://kms.example", env) == "direct");
  env.vars["no_proxy"] = "other.example";
  CHECK(route_for("", "https://kms.example", env) == "upper:3128");
  env.vars["no_proxy"] = "";  // set, even empty: NO_PROXY is not read
  CHECK(route_for("", "https://kms.example", env) == "upper:3128");
  CHECK(route_for("NONE", "https://kms.example", env) == "direct");
  // ... but not kps.proxy: an explicit proxy is used for every KPS and IAM call.
  env.vars["no_proxy"] = "*";
  CHECK(route_for("http://configured:8080", "https://kms.example", env) == "configured:8080");
}

TEST_CASE("proxy from the environment: credentials kept secret - a bad URL is an error") {
  Env env;
  env.vars = {{"https_proxy", "http://bob:hunter2@proxy.corp:3128"}};
  auto r = choose_proxy("", endpoint("https://kms.example"), env.lookup());
  REQUIRE(r);
  REQUIRE(r->route);
  CHECK(r->route->credentials.reveal() == "bob:hunter2");
  CHECK(r->route->source == "https_proxy");
  CHECK(r->why == "through proxy proxy.corp:3128 ($https_proxy)");
  env.vars["https_proxy"] = "bob:hunt://er2@proxy.corp:99999";  // a "://" inside the password
  r = choose_proxy("", endpoint("https://kms.example"), env.lookup());
  REQUIRE_FALSE(r);
  CHECK(r.error().message.find("hunt") == std::string::npos);
  CHECK(r.error().message.find("er2") == std::string::npos);
  env.vars["https_proxy"] = "socks5h://bob:hunter2@proxy.corp:1080";
  r = choose_proxy("", endpoint("https://kms.example"), env.lookup());
  REQUIRE_FALSE(r);
  CHECK(r.error().message.find("$https_proxy") != std::string::npos);
  CHECK(r.error().message.find("hunter2") == std::string::npos);
}
