#pragma once
// The KPS API calls kpsd makes, over an HttpClient, authenticated by Credentials. A 401 tells
// the credentials (which refresh once); every failure comes back as a value.
#include "config/config.hpp"
#include "config/proxy.hpp"
#include "core/result.hpp"
#include "kps/classify.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <memory>
#include <optional>
#include <string>

namespace kpsd {

class Credentials;
class HttpClient;

class KpsClient {
 public:
  // Throws std::runtime_error when ca_file cannot be loaded. `proxy`: see HttpClient.
  KpsClient(boost::asio::any_io_executor executor, const KpsConfig& config,
            std::optional<ProxyRoute> proxy = std::nullopt);
  ~KpsClient();
  KpsClient(const KpsClient&) = delete;
  KpsClient& operator=(const KpsClient&) = delete;

  void set_credentials(Credentials& credentials);  // before the first call
  const std::string& host_header() const;

  // POST /v3/{project_id}/keypairs/disassociate with a body from make_disassociate_body.
  boost::asio::awaitable<HttpResult> disassociate(std::string body);
  // GET /v3/{project_id}/tasks/{task_id}
  boost::asio::awaitable<HttpResult> get_task(std::string task_id);
  // GET /v3/{project_id}/failed-tasks?limit=N&offset=M
  boost::asio::awaitable<HttpResult> get_failed_tasks(int limit, std::int64_t offset);
  // GET /v3/{project_id}/running-tasks?limit=N&offset=M (at most 1,000 tasks are ever listed)
  boost::asio::awaitable<HttpResult> get_running_tasks(int limit, std::int64_t offset);

  Result<void> reload_ca(const std::string& ca_file);  // SIGHUP; the old CA stays on a failure
  void close_idle();
  // Aborts every call in flight (they end with a transport error) and refuses new ones:
  // the end of a graceful stop.
  void cancel_all();

 private:
  boost::asio::awaitable<HttpResult> call(std::string method, std::string target, std::string body);
  std::unique_ptr<HttpClient> http_;
  Credentials* credentials_ = nullptr;
  std::string base_path_;
  std::string last_credentials_error_;
};

}  // namespace kpsd
