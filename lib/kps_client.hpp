#pragma once
// HTTP/1.1 client for the KPS API (Boost.Beast, C++20 coroutines). Keeps idle keep-alive
// connections for reuse, puts a deadline on every step, and returns every failure as a value.
// Used from one thread (the network thread).
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <memory>
#include <string>

#include "config.hpp"
#include "kps_api.hpp"
#include "token_source.hpp"

namespace kpsd {

class KpsClient {
 public:
  KpsClient(boost::asio::any_io_executor executor, const KpsConfig& config, TokenSource& tokens);
  ~KpsClient();
  KpsClient(const KpsClient&) = delete;
  KpsClient& operator=(const KpsClient&) = delete;

  // POST /v3/{project_id}/keypairs/disassociate with a body from make_disassociate_body.
  boost::asio::awaitable<HttpResult> disassociate(std::string body);
  // GET /v3/{project_id}/tasks/{task_id}
  boost::asio::awaitable<HttpResult> get_task(std::string task_id);
  // GET /v3/{project_id}/failed-tasks?limit=N&offset=M
  boost::asio::awaitable<HttpResult> get_failed_tasks(int limit, std::int64_t offset);

  // Drops idle connections (on stop).
  void close_idle();
  // Aborts every call in flight (they end with a transport error) and refuses new ones:
  // the end of a graceful stop.
  void cancel_all();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Percent-encodes everything but RFC 3986 unreserved characters.
std::string percent_encode(std::string_view s);

}  // namespace kpsd
