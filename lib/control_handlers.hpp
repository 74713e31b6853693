#pragma once
// What each control op does: one handler per request kind, behind the control socket's
// transport (control_server: listen, accept, evict, serve). No socket here: a request line in,
// a reply line out.
#include "control_protocol.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>

#include <string>
#include <sys/types.h>

namespace kpsd {

class DbWorker;
class Scheduler;
struct Metrics;

// Who sent a request, as the kernel vouches for it (SO_PEERCRED).
struct PeerCred {
  pid_t pid = 0;
  uid_t uid = 0;
};

class ControlHandlers {
 public:
  ControlHandlers(DbWorker& db, Scheduler& scheduler, Metrics& metrics);

  // One request line (without its newline) to its reply line (with it): {"ok":true,...} or
  // {"ok":false,"error":...}. State changes are logged with the peer's uid and pid. A store
  // failure is a reply, never an exception.
  boost::asio::awaitable<std::string> handle(const std::string& line, PeerCred peer);

 private:
  boost::asio::awaitable<boost::json::object> execute(EnqueueRequest& r, PeerCred peer);
  boost::asio::awaitable<boost::json::object> execute(ListRequest& r, PeerCred);
  boost::asio::awaitable<boost::json::object> execute(ShowRequest& r, PeerCred);
  boost::asio::awaitable<boost::json::object> execute(StatsRequest& r, PeerCred);
  boost::asio::awaitable<boost::json::object> execute(BatchesRequest& r, PeerCred);
  boost::asio::awaitable<boost::json::object> execute(PruneRequest& r, PeerCred);
  boost::asio::awaitable<boost::json::object> execute(VersionRequest&, PeerCred);
  boost::asio::awaitable<boost::json::object> execute(RetryRequest& r, PeerCred);
  boost::asio::awaitable<boost::json::object> execute(CancelRequest& r, PeerCred);
  boost::asio::awaitable<boost::json::object> execute(PauseRequest& r, PeerCred);
  static std::string summary(const ControlRequest& r);

  DbWorker& db_;
  Scheduler& scheduler_;
  Metrics& metrics_;
};

}  // namespace kpsd
