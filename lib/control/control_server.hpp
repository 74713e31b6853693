#pragma once
// The control socket: a unix stream socket speaking NDJSON (one request, one reply per line).
// Each client gets its own coroutine; a slow or silent client only holds its own connection.
#include "config/config.hpp"
#include "control/reload.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <functional>
#include <memory>

namespace kpsd {

class DbWorker;
class Scheduler;
struct Metrics;

class ControlServer {
 public:
  // Binds and listens now (start-up errors throw std::runtime_error naming the path).
  ControlServer(boost::asio::any_io_executor executor, const ControlConfig& config, DbWorker& db,
                Scheduler& scheduler, Metrics& metrics);
  ~ControlServer();  // removes the socket file

  boost::asio::awaitable<void> run();  // accept loop; returns after stop()
  void stop();                         // closes the listener and every client connection
  // What the op `reload` runs; it answers once this returns (see ControlHandlers::set_reload).
  void set_reload(std::function<ReloadOutcome()> reload);
  // The brakes a new batch gets when its enqueue names none ([queue] canary, max_failures).
  void set_default_brakes(const Brakes& brakes);

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace kpsd
