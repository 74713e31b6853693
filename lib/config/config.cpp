#include "config/config.hpp"

#include "config/config_parser.hpp"
#include "config/proxy.hpp"
#include "config/regions.hpp"
#include "core/url.hpp"

#include <spdlog/common.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <sys/stat.h>
#include <sys/un.h>
#include <vector>

namespace kpsd {

using detail::Parser;

namespace {
bool is_hex(std::string_view s) {
  for (char c : s) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

}  // namespace

Result<Endpoint> parse_endpoint(std::string_view text) {
  Endpoint e;
  e.text = std::string(text);
  std::string_view rest = text;
  if (rest.starts_with("https://")) {
    e.scheme = "https";
    e.port = 443;
    rest.remove_prefix(8);
  } else if (rest.starts_with("http://")) {
    e.scheme = "http";
    e.port = 80;
    rest.remove_prefix(7);
  } else {
    return fail("`" + e.text + "` must start with https:// (or http:// for tests)");
  }
  while (rest.ends_with('/')) rest.remove_suffix(1);
  if (rest.find('/') != std::string_view::npos) {
    return fail("`" + e.text + "` must be a base URL without a path (kpsd adds /v3/...)");
  }
  std::string_view host = rest;
  if (auto colon = rest.rfind(':'); colon != std::string_view::npos && rest.front() != '[') {
    host = rest.substr(0, colon);
    std::string_view port = rest.substr(colon + 1);
    unsigned p = 0;
    auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (ec != std::errc{} || ptr != port.data() + port.size() || p == 0 || p > 65535) {
      return fail("`" + e.text + "` has an invalid port");
    }
    e.port = static_cast<std::uint16_t>(p);
  }
  if (host.empty()) return fail("`" + e.text + "` has no host");
  for (char c : host) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-')) {
      return fail("`" + e.text + "` has an invalid host name");
    }
  }
  e.host = std::string(host);
  return e;
}

namespace {

// Every call to these endpoints carries a secret (issue 31): in clear only on this machine
// (tests, the demo); to another host only over https.
void refuse_plain_http(Parser& p, std::string_view key, const Endpoint& e, std::string_view what) {
  if (e.scheme != "http" || e.host.empty() || is_loopback_host(e.host)) return;
  p.fail(p.line_of(std::string(key)), key,
         "`" + e.text + "` is plain http to another host: " + std::string(what) +
             " would cross the network in clear; use https:// (http:// only to a loopback "
             "address)");
}

// An endpoint set by hand that names another known region than kps.region (a sample file's
// endpoint left in place): calls would go to one region and IAM to another.
void check_endpoint_region(Parser& p, const Config& c) {
  if (c.kps.region.empty() || !p.get("kps.endpoint")) return;
  for (auto other : known_regions()) {
    if (other == c.kps.region) continue;
    if (c.kps.endpoint.host.starts_with("kms." + std::string(other) + ".")) {
      p.fail(p.line_of("kps.endpoint"), "kps.endpoint",
             "`" + c.kps.endpoint.text + "` is in region " + std::string(other) +
                 " but kps.region is " + c.kps.region + " (remove endpoint to use the region's)");
    }
  }
}

}  // namespace

namespace detail {

// [kps]: where the API is and how tasks are followed.
void parse_kps(Parser& p, Config& c) {
  p.string_value("kps.region", c.kps.region);
  std::optional<RegionEndpoints> derived;
  if (!c.kps.region.empty()) {
    derived = region_endpoints(c.kps.region);
    if (!derived && !p.get("kps.endpoint")) {
      std::string known;
      for (auto r : known_regions()) known += (known.empty() ? "" : " ") + std::string(r);
      p.fail(p.line_of("kps.region"), "kps.region",
             "`" + c.kps.region + "` is not a region kpsd knows (" + known +
                 "); for another one, set kps.endpoint (and auth.iam_endpoint) by hand");
    }
  }
  std::string endpoint;
  p.string_value("kps.endpoint", endpoint, !derived);
  if (endpoint.empty() && derived) endpoint = derived->kps;
  auto kps_endpoint = parse_endpoint(endpoint);
  if (!kps_endpoint)
    p.fail(p.line_of("kps.endpoint"), "kps.endpoint", kps_endpoint.error().message);
  c.kps.endpoint = std::move(*kps_endpoint);
  check_endpoint_region(p, c);
  refuse_plain_http(p, "kps.endpoint", c.kps.endpoint, "the token or the signed requests");
  p.string_value("kps.project_id", c.kps.project_id, true);
  if (c.kps.project_id == "auto") {
    c.kps.project_id.clear();
    c.kps.project_id_auto = true;
    if (c.kps.region.empty()) {
      p.fail(p.line_of("kps.project_id"), "kps.project_id",
             "auto looks the project up by its region name: set kps.region too");
    }
  } else if (c.kps.project_id.size() != 32 || !is_hex(c.kps.project_id)) {
    p.fail(p.line_of("kps.project_id"), "kps.project_id",
           "`" + c.kps.project_id +
               "` must be 32 hexadecimal characters (the IAM project id), or auto");
  }
  p.string_value("kps.ca_file", c.kps.ca_file);
  p.millis("kps.request_timeout_ms", c.kps.request_timeout, 1);
  p.boolean("kps.poll_tasks", c.kps.poll_tasks);
  p.millis("kps.poll_initial_delay_ms", c.kps.poll_initial_delay, 0);
  p.millis("kps.poll_interval_ms", c.kps.poll_interval, 1);
  p.millis("kps.poll_timeout_ms", c.kps.poll_timeout, 1);
  p.string_value("kps.proxy", c.kps.proxy);
  if (ascii_lower(c.kps.proxy) == "none") c.kps.proxy = "none";
  if (!c.kps.proxy.empty() && c.kps.proxy != "none") {
    auto route = parse_proxy_url(c.kps.proxy, false);
    std::string err = route ? "" : route.error().message;
    // In the file the scheme is required: a bare word (a misspelt "none") is not a host.
    if (route && !ascii_lower(c.kps.proxy).starts_with("http://"))
      err = "`" + c.kps.proxy + "` has no http:// scheme";
    if (!err.empty())
      p.fail(p.line_of("kps.proxy"), "kps.proxy", err + " (expected http://HOST:PORT or none)");
  }
  p.string_value("kps.proxy_credentials_file", c.kps.proxy_credentials_file);
  if (!c.kps.proxy_credentials_file.empty() && c.kps.proxy == "none") {
    p.fail(p.line_of("kps.proxy_credentials_file"), "kps.proxy_credentials_file",
           "is set but kps.proxy = none: no proxy is used");
  }
}

// auth.iam_endpoint: as written, else derived from kps.region; used by iam_password and by
// project_id = auto.
static void parse_iam_endpoint(Parser& p, Config& c) {
  std::string iam;
  p.string_value("auth.iam_endpoint", iam);
  if (iam.empty()) {
    if (auto derived = region_endpoints(c.kps.region)) iam = derived->iam;
  }
  if (iam.empty()) {
    if (c.kps.project_id_auto) {
      p.fail(p.line_of("kps.project_id"), "kps.project_id",
             "auto needs an IAM endpoint: set auth.iam_endpoint for region `" + c.kps.region + "`");
    }
    return;
  }
  auto iam_endpoint = parse_endpoint(iam);
  if (!iam_endpoint) {
    p.fail(p.line_of("auth.iam_endpoint"), "auth.iam_endpoint", iam_endpoint.error().message);
  }
  c.auth.iam_endpoint = std::move(*iam_endpoint);
  refuse_plain_http(p, "auth.iam_endpoint", c.auth.iam_endpoint, "the IAM password and the tokens");
}

// [auth]: one method and only its keys.
void parse_auth(Parser& p, Config& c) {
  std::string method = "token";
  p.string_value("auth.method", method);
  const std::map<std::string, std::vector<std::string>> keys_of{
      {"token", {"auth.token_file"}},
      {"iam_password", {"auth.domain", "auth.user", "auth.password_file", "auth.project"}},
      {"aksk", {"auth.ak_file", "auth.sk_file", "auth.security_token_file"}},
      {"ecs_agency", {"auth.metadata_endpoint"}}};
  if (!keys_of.contains(method)) {
    p.fail(p.line_of("auth.method"), "auth.method",
           "`" + method + "` is not one of token, iam_password, aksk, ecs_agency");
  }
  c.auth.method = method == "token"          ? AuthMethod::token
                  : method == "iam_password" ? AuthMethod::iam_password
                  : method == "aksk"         ? AuthMethod::aksk
                                             : AuthMethod::ecs_agency;
  // A key of another method is a mistake worth stopping for (it would be silently ignored).
  for (const auto& [other, keys] : keys_of) {
    if (other == method) continue;
    for (const auto& key : keys) {
      if (p.get(key)) p.fail(p.line_of(key), key, "is only used with method = " + other);
    }
  }
  p.string_value("auth.token_file", c.auth.token_file);
  if (c.auth.token_file.empty()) {
    p.fail(p.line_of("auth.token_file"), "auth.token_file", "must not be empty");
  }
  parse_iam_endpoint(p, c);
  if (c.auth.method == AuthMethod::iam_password) {
    if (c.auth.iam_endpoint.host.empty()) {
      p.fail(p.line_of("auth.iam_endpoint"), "auth.iam_endpoint",
             "required with method = iam_password (or set kps.region)");
    }
    p.string_value("auth.domain", c.auth.domain, true);
    p.string_value("auth.user", c.auth.user, true);
    p.string_value("auth.password_file", c.auth.password_file, true);
    c.auth.project = c.kps.region;  // the project named after the region, as IAM names them
    p.string_value("auth.project", c.auth.project, c.kps.region.empty());
    if (c.auth.project.empty())
      p.fail(p.line_of("auth.project"), "auth.project", "must not be empty");
  }
  if (c.auth.method == AuthMethod::aksk) {
    p.string_value("auth.ak_file", c.auth.ak_file, true);
    p.string_value("auth.sk_file", c.auth.sk_file, true);
    p.string_value("auth.security_token_file", c.auth.security_token_file);
  }
  if (c.auth.method == AuthMethod::ecs_agency) {
    std::string metadata = "http://169.254.169.254";
    p.string_value("auth.metadata_endpoint", metadata);
    auto metadata_endpoint = parse_endpoint(metadata);
    if (!metadata_endpoint) {
      p.fail(p.line_of("auth.metadata_endpoint"), "auth.metadata_endpoint",
             metadata_endpoint.error().message);
    }
    c.auth.metadata_endpoint = std::move(*metadata_endpoint);
  }
}

// [queue]: the database, concurrency, pace, attempts and backoff.
void parse_queue(Parser& p, Config& c) {
  p.string_value("queue.database", c.queue.database);
  if (c.queue.database.empty()) {
    p.fail(p.line_of("queue.database"), "queue.database", "must not be empty");
  }
  p.unsigned_value("queue.concurrency", c.queue.concurrency, 1, 4096);
  if (const auto* s = p.get("queue.rate_per_second")) {
    double v = 0;
    // "auto" (no ceiling: the gateway's 429s alone set the pace) is the same as 0.
    if (s->value != "auto") {
      auto [ptr, ec] = std::from_chars(s->value.data(), s->value.data() + s->value.size(), v);
      if (ec != std::errc{} || ptr != s->value.data() + s->value.size() || s->value.empty() ||
          !(v >= 0 && v <= 100000)) {
        p.fail(s->line, "queue.rate_per_second",
               "`" + s->value + "` must be auto, or a number from 0 (no ceiling) to 100000");
      }
    }
    c.queue.rate_per_second = v;
  }
  p.unsigned_value("queue.max_attempts", c.queue.max_attempts, 1, 1000);
  p.unsigned_value("queue.task_failure_retries", c.queue.task_failure_retries, 0, 100);
  p.millis("queue.backoff_initial_ms", c.queue.backoff_initial, 1);
  p.millis("queue.backoff_max_ms", c.queue.backoff_max, 1);
  p.millis("queue.throttle_backoff_ms", c.queue.throttle_backoff, 1);
  p.millis("queue.drain_grace_ms", c.queue.drain_grace, 0);
  p.millis("queue.retry_after_max_ms", c.queue.retry_after_max, 1);
  p.unsigned_value("queue.retention_days", c.queue.retention_days, 0, 36500);
  unsigned canary = 0;
  p.unsigned_value("queue.canary", canary, 0, 1000000);
  c.queue.default_canary = canary;
  if (const auto* s = p.get("queue.max_failures"); s && !s->value.empty()) {
    auto with_budget = parse_max_failures(s->value, c.queue.default_brakes);
    if (!with_budget) p.fail(s->line, "queue.max_failures", with_budget.error().message);
    c.queue.default_brakes = *with_budget;
  }
  if (c.queue.backoff_max < c.queue.backoff_initial) {
    p.fail(p.line_of("queue.backoff_max_ms"), "queue.backoff_max_ms",
           "must not be smaller than queue.backoff_initial_ms");
  }
}

// [control]: the socket and who may use it.
void parse_control(Parser& p, Config& c) {
  p.string_value("control.socket", c.control.socket);
  if (c.control.socket.empty()) {
    p.fail(p.line_of("control.socket"), "control.socket", "must not be empty");
  }
  // bind() would fail later with "File name too long": sun_path holds the path and its NUL.
  constexpr std::size_t max_socket_path = sizeof(sockaddr_un::sun_path) - 1;
  if (c.control.socket.size() > max_socket_path) {
    p.fail(p.line_of("control.socket"), "control.socket",
           "`" + c.control.socket + "` is " + std::to_string(c.control.socket.size()) +
               " bytes long; a Unix socket path holds at most " + std::to_string(max_socket_path) +
               " bytes (choose a shorter path)");
  }
  if (const auto* s = p.get("control.socket_mode")) {
    c.control.socket_mode = static_cast<unsigned>(p.integer(*s, "control.socket_mode", 0, 0777, 8));
    if (c.control.socket_mode & 0007) {
      p.fail(s->line, "control.socket_mode",
             "`" + s->value +
                 "` gives access to other users; the socket must not be "
                 "world-accessible (use 0600 or 0660)");
    }
  }

  p.unsigned_value("control.max_clients", c.control.max_clients, 1, 10000);
}

// [metrics]: listen = ADDRESS:PORT (IPv6 in brackets), or off when empty.
void parse_metrics(Parser& p, Config& c) {
  std::string listen;
  p.string_value("metrics.listen", listen);
  if (!listen.empty()) {
    // host:port, with IPv6 hosts in brackets: [::1]:9464
    auto colon = listen.rfind(':');
    std::string host = colon == std::string::npos ? "" : listen.substr(0, colon);
    std::string port = colon == std::string::npos ? "" : listen.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
      host = host.substr(1, host.size() - 2);
    unsigned v = 0;
    auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), v);
    if (host.empty() || port.empty() || ec != std::errc{} || ptr != port.data() + port.size() ||
        v > 65535) {
      p.fail(p.line_of("metrics.listen"), "metrics.listen",
             "`" + listen + "` must be ADDRESS:PORT, e.g. 127.0.0.1:9464");
    }
    c.metrics.enabled = true;
    c.metrics.host = host;
    c.metrics.port = static_cast<std::uint16_t>(v);
  }
}

// [log]: the level.
void parse_log(Parser& p, Config& c) {
  p.string_value("log.level", c.log.level);
  if (spdlog::level::from_str(c.log.level) == spdlog::level::off && c.log.level != "off") {
    p.fail(p.line_of("log.level"), "log.level",
           "`" + c.log.level + "` is not one of trace, debug, info, warn, error, critical, off");
  }
}

}  // namespace detail

}  // namespace kpsd
