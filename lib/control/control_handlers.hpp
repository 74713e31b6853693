#pragma once
// What each control op does: one handler per request kind, behind the control socket's
// transport (control_server: listen, accept, evict, serve). No socket here: a request line in,
// a reply line out.
#include "control/peer_identity.hpp"
#include "control/reload.hpp"
#include "core/result.hpp"
#include "protocol/control_protocol.hpp"
#include "protocol/control_reply.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>

#include <functional>
#include <string>

namespace kpsd {

class DbWorker;
class Scheduler;
struct Metrics;

// Whether a prune with this cut-off (Unix ms) may run now, or why not: a cut-off in the future
// never; one under min_prune_age_ms ago only with `force` (or a dry run). Plain code.
Result<> prune_allowed(std::int64_t before_ms, std::int64_t now_ms, bool force);

class ControlHandlers {
 public:
  ControlHandlers(DbWorker& db, Scheduler& scheduler, Metrics& metrics);

  // What the op `reload` runs (the daemon's reload, as SIGHUP); unset, the op is refused.
  void set_reload(std::function<ReloadOutcome()> reload) { reload_ = std::move(reload); }
  // [queue] canary and max_failures: the brakes a new batch gets when its enqueue names none.
  void set_default_brakes(const Brakes& brakes) { default_brakes_ = brakes; }

  // One request line (without its newline) to its reply line (with it): {"ok":true,...} or
  // {"ok":false,"error":...}. State changes are logged with the peer's uid, user name and pid
  // (the audit line). A store failure is a reply, never an exception.
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
  boost::asio::awaitable<boost::json::object> execute(ReloadRequest&, PeerCred);
  static std::string summary(const ControlRequest& r);
  // A batch's id from its id or name (control_batch_ops.cpp); nullopt: no such batch.
  boost::asio::awaitable<std::optional<std::int64_t>> batch_id_of(const std::string& batch);

  DbWorker& db_;
  Scheduler& scheduler_;
  Metrics& metrics_;
  PeerNames names_;
  std::function<ReloadOutcome()> reload_;
  Brakes default_brakes_;
};

}  // namespace kpsd
