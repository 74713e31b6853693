#pragma once
// The scheduler: takes due jobs from the store, runs at most `concurrency` calls at once under
// the rate limit, follows delivered tasks, and writes each outcome back (group-committed).
// Lives on the network thread; every store call goes through the DbWorker.
#include "config/config.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace kpsd {

class DbWorker;
class KpsClient;
struct Metrics;

class Scheduler {
 public:
  Scheduler(boost::asio::any_io_executor executor, const Config& config, DbWorker& db,
            KpsClient& client, Metrics& metrics);
  ~Scheduler();

  // Runs until stop() and until every call in flight has ended and been recorded.
  boost::asio::awaitable<void> run();
  void wake();   // new work may be due (enqueue, retry ...)
  void stop();   // stop starting calls; in-flight ones finish and are recorded
  void abort();  // (after stop) cancel calls still in flight; their jobs go back to `queued`
  void set_paused(bool paused);  // paused: no new calls (calls in flight finish)
  // SIGHUP: applies queue.concurrency, queue.rate_per_second, the attempt, backoff, poll and
  // throttle settings from a fresh configuration (the caller has checked it). A lower
  // concurrency takes effect as calls end.
  void apply(const Config& fresh);
  void probe_now();  // blocked: send the next probe now (after SIGHUP fixed it)

  struct Stats {
    std::int64_t in_flight = 0;
    double rate_per_second = 0;             // current pace found from 429s; 0 = not paced
    double configured_rate_per_second = 0;  // the ceiling; 0 = none (auto)
    double throttled_share = 0;             // 429s among answers in the last minute
    bool holding_for_quota = false;         // the gateway refuses everything: probing only
    std::int64_t quota_window_ms = 0;       // quota window recognised (0: none)
    std::int64_t quota_calls = 0;           // calls it admits (0: unknown)
    bool stopping = false;
    bool paused = false;
    bool store_writable = true;
    std::string store_problem;             // why the store cannot be written (empty: it can)
    std::int64_t store_down_since_ms = 0;  // Unix ms; 0 while writable
    std::int64_t outcomes_waiting = 0;     // outcomes not yet committed
    std::string blocked_reason;            // calls paused (credentials, TLS ...); empty: not
    std::string_view blocked_cause;        // "credentials", "tls", "descriptors", "proxy", ""
    double send_rate_per_second = 0;       // calls started per second, measured
    std::int64_t blocked_since_ms = 0;
  };
  Stats stats() const;
  // Set when the database proved malformed: run() has ended and kpsd must exit.
  const std::string& fatal_error() const;
  // Called on the network thread when the store stops or starts being writable.
  void on_health_change(std::function<void()> listener);

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace kpsd
