#pragma once
// HTTP/1.1 over TCP or TLS (Boost.Beast, C++20 coroutines) to one endpoint: keeps idle
// keep-alive connections for reuse, puts a deadline on every step, verifies https peers
// (always: chain against the system store plus ca_file, host name, SNI, TLS 1.2 or newer), and
// returns every failure as a value. Used from one thread (the network thread).
#include "config/config.hpp"
#include "config/proxy.hpp"
#include "core/result.hpp"
#include "core/url.hpp"  // is_loopback_host
#include "net/http_result.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace kpsd {

// A request as plain values, so credentials and signing need no Beast types.
struct HttpRequest {
  std::string method;  // "GET", "POST"
  std::string target;  // path and query, already percent-encoded
  std::vector<std::pair<std::string, std::string>> headers;  // besides Host and Content-Length
  std::string body;
};

class HttpClient {
 public:
  // Throws std::runtime_error when ca_file cannot be loaded (a start-up failure). With `proxy`,
  // every connection goes to it: https through CONNECT (TLS still verified end to end against
  // `endpoint`), http in the absolute form; a 407 is Transport::proxy_refused.
  HttpClient(boost::asio::any_io_executor executor, Endpoint endpoint, std::string ca_file,
             std::chrono::milliseconds timeout, std::optional<ProxyRoute> proxy = std::nullopt);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  boost::asio::awaitable<HttpResult> exchange(const HttpRequest& request);

  const std::string& host_header() const;  // what Host: says (host, plus :port if not default)
  const Endpoint& endpoint() const;

  // Re-reads ca_file into a new TLS context for new connections (SIGHUP). On a failure the
  // old context stays.
  Result<void> reload_ca(const std::string& ca_file);
  void close_idle();
  void cancel_all();  // aborts calls in flight and refuses new ones (end of a stop)

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kpsd
