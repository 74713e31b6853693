#pragma once
// Which HTTP proxy kpsd's connections to KPS and IAM go through, decided once at start from
// [kps] proxy or, when it is unset, from the environment as curl reads it (curl(1),
// ENVIRONMENT; libcurl's no_proxy rules). Plain code without I/O: the environment is passed in.
// Metadata-service calls never use a proxy (they do not ask).
#include "config/config.hpp"
#include "core/result.hpp"
#include "core/secret.hpp"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kpsd {

// An http:// forward proxy: HTTPS goes through CONNECT, plain HTTP in the absolute form.
struct ProxyRoute {
  std::string host;        // a name or an address (IPv6 without brackets)
  std::uint16_t port = 0;  // 1080 when the URL gives none, as curl
  Secret credentials;      // "user:password" for Basic auth (RFC 7617); empty = none
  std::string source;      // where it came from: "kps.proxy", "https_proxy", ...

  // "host:port" for messages: never the credentials.
  std::string text() const;
};

// The environment as a function: name -> value, or nullptr when unset (::getenv in kpsd).
using EnvLookup = std::function<const char*(const char*)>;

// Parses "http://[user:password@]HOST[:PORT][/]". Userinfo is accepted only when
// `allow_userinfo` (the environment, as curl; the configuration file must not hold a secret:
// kps.proxy_credentials_file does), and is percent-decoded. A failure names `text` without its
// userinfo.
Result<ProxyRoute> parse_proxy_url(std::string_view text, bool allow_userinfo);

// no_proxy as libcurl reads it: "*" as the whole value matches every host; otherwise
// comma-separated entries: a name matches itself and its subdomains (leading and trailing dots
// are ignored); an IP address matches itself, and an address/bits entry (CIDR) the addresses in
// it. Names compare case-insensitively; a ":port" on an entry is ignored.
bool no_proxy_matches(std::string_view no_proxy, std::string_view host);

// The route to a target and the rule that chose it.
struct ProxyChoice {
  std::optional<ProxyRoute> route;  // nullopt: a direct connection
  std::string why;                  // for the start-up log line; never a credential
};

// The proxy for `target`, or no route for a direct connection. `configured` is kps.proxy as
// written ("" unset, "none" in any case, or a URL checked by the config parser). Precedence:
// kps.proxy = URL: that proxy, the environment is not read; kps.proxy = none: direct;
// unset: https_proxy, HTTPS_PROXY (https targets) or http_proxy (http targets; no upper-case
// form, as curl, since CGI sets HTTP_PROXY from a request header), then all_proxy, ALL_PROXY;
// a target matched by no_proxy (or NO_PROXY when no_proxy is unset) is reached directly. `why` says
// which rule applied. A failure when an environment value is not a usable proxy URL (a start-up
// failure, EX_CONFIG, where proxy_for throws it).
Result<ProxyChoice> choose_proxy(std::string_view configured, const Endpoint& target,
                                 const EnvLookup& env);

// The Proxy-Authorization value for `route` ("Basic " + base64), or empty without credentials.
Secret proxy_authorization(const ProxyRoute& route);

}  // namespace kpsd

namespace kpsd {

// The proxy for kpsd's calls to `target` (KPS or IAM) as kpsd starts them: choose_proxy with
// the process's environment, plus the credentials of kps.proxy_credentials_file ("user:password",
// one line; they replace any in an environment URL). `why` says the route, as choose_proxy.
// Throws ConfigError (a start-up failure): an environment URL that is not usable, an unreadable
// credentials file. Does I/O (the environment, one file): in proxy_setup.cpp.
ProxyChoice proxy_for(const KpsConfig& kps, const Endpoint& target);

// One line per endpoint kpsd will call (KPS, and IAM when it is used), with its route, for the
// start-up log and --check-config: "KPS https://... (region r): through proxy h:p ($https_proxy)".
// Throws as proxy_for.
std::vector<std::string> describe_routes(const Config& config);

}  // namespace kpsd
