#include "kps/kps_client.hpp"

#include "auth/credentials.hpp"
#include "core/url.hpp"
#include "net/http_client.hpp"

#include <openssl/crypto.h>
#include <spdlog/spdlog.h>

namespace kpsd {

namespace net = boost::asio;

KpsClient::KpsClient(net::any_io_executor executor, const KpsConfig& config,
                     std::optional<ProxyRoute> proxy)
    : http_(std::make_unique<HttpClient>(executor, config.endpoint, config.ca_file,
                                         config.request_timeout, std::move(proxy))),
      base_path_("/v3/" + config.project_id) {}

KpsClient::~KpsClient() = default;

void KpsClient::set_credentials(Credentials& credentials) { credentials_ = &credentials; }

const std::string& KpsClient::host_header() const { return http_->host_header(); }

net::awaitable<HttpResult> KpsClient::call(std::string method, std::string target,
                                           std::string body) {
  HttpRequest req;
  req.method = std::move(method);
  req.target = std::move(target);
  req.headers.emplace_back("Accept", "application/json");
  if (req.method == "POST") req.headers.emplace_back("Content-Type", "application/json");
  req.body = std::move(body);
  std::uint64_t generation = 0;
  auto applied = co_await credentials_->apply(req, generation);
  HttpResult r;
  if (!applied) {
    const std::string& error = applied.error().message;
    r.transport = HttpResult::Transport::no_credentials;
    r.transport_detail = error;
    if (error != last_credentials_error_) {  // once per cause, not once per call
      spdlog::error("cannot authenticate: {}; calls wait and retry without using up attempts",
                    error);
      last_credentials_error_ = error;
    }
  } else {
    last_credentials_error_.clear();
    r = co_await http_->exchange(req);
    if (r.transport == HttpResult::Transport::ok && r.status == 401) {
      credentials_->rejected(generation);
    }
  }
  // The body may hold a job's key, the headers a token: clear them before the memory goes.
  OPENSSL_cleanse(req.body.data(), req.body.size());
  for (auto& [name, value] : req.headers) OPENSSL_cleanse(value.data(), value.size());
  co_return r;
}

net::awaitable<HttpResult> KpsClient::disassociate(std::string body) {
  return call("POST", base_path_ + "/keypairs/disassociate", std::move(body));
}

net::awaitable<HttpResult> KpsClient::get_task(std::string task_id) {
  return call("GET", base_path_ + "/tasks/" + percent_encode(task_id), {});
}

net::awaitable<HttpResult> KpsClient::get_failed_tasks(int limit, std::int64_t offset) {
  return call("GET",
              base_path_ + "/failed-tasks?limit=" + std::to_string(limit) +
                  "&offset=" + std::to_string(offset),
              {});
}

net::awaitable<HttpResult> KpsClient::get_running_tasks(int limit, std::int64_t offset) {
  return call("GET",
              base_path_ + "/running-tasks?limit=" + std::to_string(limit) +
                  "&offset=" + std::to_string(offset),
              {});
}

Result<void> KpsClient::reload_ca(const std::string& ca_file) { return http_->reload_ca(ca_file); }
void KpsClient::close_idle() { http_->close_idle(); }
void KpsClient::cancel_all() { http_->cancel_all(); }

}  // namespace kpsd
