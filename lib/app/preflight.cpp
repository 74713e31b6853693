#include "app/preflight.hpp"

#include "app/daemon.hpp"
#include "auth/credentials.hpp"
#include "auth/project_lookup.hpp"
#include "config/proxy.hpp"
#include "core/exit_codes.hpp"
#include "kps/kps_client.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include <spdlog/spdlog.h>

#include <iostream>
#include <vector>

namespace kpsd {

namespace net = boost::asio;

namespace {
std::string http_reason(const HttpResult& r) {
  ApiErrorBody e = parse_error_body(r.body);
  std::string out = "HTTP " + std::to_string(r.status);
  if (!e.code.empty()) out += " " + e.code;
  if (!e.message.empty()) out += ": " + e.message;
  if (!r.request_id.empty()) out += " (X-Request-Id " + r.request_id + ")";
  return out;
}
}  // namespace

PreflightVerdict judge_preflight(const HttpResult& r, const std::string& endpoint) {
  using T = HttpResult::Transport;
  switch (r.transport) {
    case T::ok:
      break;
    case T::no_credentials:
      return {exit_no_perm, "cannot authenticate: " + r.transport_detail};
    case T::proxy_refused:
      return {exit_no_perm, r.transport_detail};
    case T::tls_failed:
      return {exit_unavailable, "TLS with " + endpoint + " failed: " + r.transport_detail +
                                    " (kps.ca_file for a private CA)"};
    default:
      return {exit_unavailable, "cannot reach " + endpoint + ": " + r.transport_detail};
  }
  std::string latency = " in " + std::to_string(r.latency.count()) + " ms";
  if (r.status == 200) {
    auto page = parse_failed_tasks_body(r.body);
    if (!page) {
      return {exit_unavailable, "HTTP 200 but not a failed-tasks answer (" + page.error().message +
                                    "): is kps.endpoint the KPS (KMS) endpoint?"};
    }
    return {exit_ok, "ok: " + endpoint + " accepted the credentials (GET failed-tasks: HTTP 200" +
                         latency + ", " + std::to_string(page->total) + " failed tasks on record" +
                         (r.request_id.empty() ? "" : ", X-Request-Id " + r.request_id) + ")"};
  }
  if (r.status == 401) {
    return {exit_no_perm, "credentials refused: " + http_reason(r)};
  }
  if (r.status == 403) {
    return {exit_no_perm, "not permitted: " + http_reason(r) +
                              " (the IAM user needs KPS rights in this project)"};
  }
  if (r.status == 404) {
    return {exit_config,
            "not found: " + http_reason(r) + " (check kps.endpoint and kps.project_id)"};
  }
  if (r.status == 429 || r.status >= 500) {
    return {exit_unavailable, "the service did not serve the call: " + http_reason(r)};
  }
  return {exit_config, "refused: " + http_reason(r)};
}

PreflightVerdict run_preflight(const Config& config) {
  net::io_context io(1);
  std::unique_ptr<KpsClient> client;
  std::unique_ptr<Credentials> credentials;
  std::string route;
  try {
    ProxyChoice proxy = proxy_for(config.kps, config.kps.endpoint);
    route = proxy.why;
    client = std::make_unique<KpsClient>(io.get_executor(), config.kps, std::move(proxy.route));
    credentials = make_credentials(io.get_executor(), config, client->host_header());
    client->set_credentials(*credentials);
  } catch (const std::exception& e) {
    return {exit_config, e.what()};
  }
  HttpResult result;
  auto call = [&]() -> net::awaitable<void> { result = co_await client->get_failed_tasks(1, 0); };
  net::co_spawn(io, call(), net::detached);
  io.run();
  PreflightVerdict verdict = judge_preflight(result, config.kps.endpoint.text);
  verdict.message += " [" + route + "]";  // which path the call took
  return verdict;
}

int check_config(Config config, const std::string& path, bool preflight) {
  // Also the files kpsd reads at start, so "ok" means it would start (no call is made).
  if (auto files = check_startup_files(config); !files) {
    std::cerr << "kpsd: " << path << ": " << files.error().message << "\n";
    return exit_config;
  }
  for (const auto& line : startup_warnings(config)) std::cerr << "kpsd: warning: " << line << "\n";
  std::vector<std::string> routes;
  try {
    routes = describe_routes(config);  // the IAM route too, which start-up files do not cover
  } catch (const std::exception& e) {
    std::cerr << "kpsd: " << path << ": " << e.what() << "\n";
    return exit_config;
  }
  if (!preflight) {
    std::cout << path << ": ok (credential and CA files readable; no call made)\n";
    for (const auto& line : routes) std::cout << "  " << line << "\n";
    if (config.kps.project_id_auto)
      std::cout << "  project_id = auto: looked up from IAM at start (--preflight tries it)\n";
    return exit_ok;
  }
  // The client's own warnings would repeat the reason printed below.
  spdlog::set_level(spdlog::level::off);
  if (config.kps.project_id_auto) {
    ProjectLookup found = look_up_project(config);
    if (found.exit_code != 0) {
      std::cerr << "kpsd: " << path << ": preflight " << found.message << "\n";
      return found.exit_code;
    }
    std::cout << "  " << found.message << "\n";
    config.kps.project_id = found.project_id;
  }
  PreflightVerdict verdict = run_preflight(config);
  (verdict.exit_code == 0 ? std::cout : std::cerr)
      << (verdict.exit_code == 0 ? "" : "kpsd: ") << path << ": preflight " << verdict.message
      << "\n";
  return verdict.exit_code;
}

}  // namespace kpsd
