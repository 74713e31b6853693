#include "auth/project_lookup.hpp"

#include "auth/credential_answers.hpp"
#include "auth/credentials.hpp"
#include "config/proxy.hpp"
#include "core/exit_codes.hpp"
#include "core/url.hpp"
#include "net/api_error.hpp"
#include "net/http_client.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include <openssl/crypto.h>
#include <spdlog/spdlog.h>

namespace kpsd {

namespace net = boost::asio;

namespace {

std::string answer_reason(const HttpResult& r) {
  if (r.transport != HttpResult::Transport::ok) return r.transport_detail;
  ApiErrorBody e = parse_error_body(r.body);
  return "HTTP " + std::to_string(r.status) + (e.code.empty() ? "" : " " + e.code) +
         (e.message.empty() ? "" : ": " + e.message);
}

ProjectLookup judge(const HttpResult& r, const Config& config) {
  const std::string& region = config.kps.region;
  std::string where = "IAM " + config.auth.iam_endpoint.text;
  if (r.transport == HttpResult::Transport::no_credentials ||
      r.transport == HttpResult::Transport::proxy_refused)
    return {"", "project_id = auto: cannot ask " + where + ": " + r.transport_detail, exit_no_perm};
  if (r.transport != HttpResult::Transport::ok || r.status == 429 || r.status >= 500)
    return {"", "project_id = auto: " + where + " did not answer: " + answer_reason(r),
            exit_unavailable};
  if (r.status == 401 || r.status == 403)
    return {"", "project_id = auto: " + where + " refused: " + answer_reason(r), exit_no_perm};
  if (r.status != 200)
    return {"", "project_id = auto: " + where + " answered " + answer_reason(r), exit_config};
  auto answer = matching_projects(r.body, region);
  if (!answer)
    return {"", "project_id = auto: " + where + ": " + answer.error().message, exit_unavailable};
  const std::vector<ProjectMatch>& found = *answer;
  if (found.empty()) {
    return {"",
            "project_id = auto: " + where + " has no project named " + region +
                " that these credentials can see (set kps.project_id by hand)",
            exit_config};
  }
  if (found.size() > 1) {
    std::string ids;
    for (const auto& p : found) ids += (ids.empty() ? "" : ", ") + p.id;
    return {"",
            "project_id = auto: " + where + " has " + std::to_string(found.size()) +
                " projects named " + region + " (" + ids + "): set kps.project_id to one",
            exit_config};
  }
  return {found.front().id,
          "project_id = auto: project " + found.front().id + " (" + region + ") from " + where, 0};
}

}  // namespace

ProjectLookup look_up_project(const Config& config) {
  net::io_context io(1);
  HttpResult result;
  try {
    HttpClient iam(io.get_executor(), config.auth.iam_endpoint, config.kps.ca_file,
                   config.kps.request_timeout,
                   proxy_for(config.kps, config.auth.iam_endpoint).route);
    // The same credentials as KPS calls, signed for the IAM host and without X-Project-Id
    // (the project is what is asked for).
    Config unscoped = config;
    unscoped.kps.project_id.clear();
    auto credentials = make_credentials(io.get_executor(), unscoped, iam.host_header());
    auto call = [&]() -> net::awaitable<void> {
      HttpRequest req;
      req.method = "GET";
      req.target = "/v3/projects?name=" + percent_encode(config.kps.region);
      req.headers.emplace_back("Accept", "application/json");
      std::uint64_t generation = 0;
      if (auto applied = co_await credentials->apply(req, generation); !applied) {
        result.transport = HttpResult::Transport::no_credentials;
        result.transport_detail = applied.error().message;
        co_return;
      }
      result = co_await iam.exchange(req);
      // The headers hold a token or a signature: clear them before the memory goes.
      for (auto& [name, value] : req.headers) OPENSSL_cleanse(value.data(), value.size());
    };
    net::co_spawn(io, call(), net::detached);
    io.run();
  } catch (const std::exception& e) {
    return {"", "project_id = auto: " + std::string(e.what()), exit_config};
  }
  return judge(result, config);
}

int resolve_project_id(Config& config) {
  if (!config.kps.project_id_auto) return 0;
  ProjectLookup found = look_up_project(config);
  if (found.exit_code != 0) {
    spdlog::critical("{}", found.message);
    return found.exit_code;
  }
  spdlog::info("{}", found.message);
  config.kps.project_id = found.project_id;
  return 0;
}

}  // namespace kpsd
