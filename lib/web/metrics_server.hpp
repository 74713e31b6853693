#pragma once
// GET /metrics in Prometheus text format, on the address of [metrics] listen, served by the
// same Beast stack as the KPS client, on the network thread. Its connections are capped
// (max_metrics_clients); idle and slow ones are closed after the timeouts of http_slots.hpp, and
// make room for a newcomer when every slot is taken.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <memory>
#include <string>

namespace kpsd {

class DbWorker;
class Scheduler;
struct Metrics;

// "metrics on http://HOST:PORT/metrics, status page on http://HOST:PORT/", for the start-up
// line (an IPv6 address in brackets).
std::string served_at(const std::string& host, std::uint16_t port);

class MetricsServer {
 public:
  // Binds now; throws std::runtime_error naming the address on failure.
  MetricsServer(boost::asio::any_io_executor executor, const std::string& host, std::uint16_t port,
                DbWorker& db, Scheduler& scheduler, Metrics& metrics);
  ~MetricsServer();
  std::uint16_t port() const;
  boost::asio::awaitable<void> run();
  void stop();

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace kpsd
