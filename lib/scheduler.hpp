#pragma once
// The scheduler: takes due jobs from the store, runs at most `concurrency` calls at once under
// the rate limit, follows delivered tasks, and writes each outcome back (group-committed).
// Lives on the network thread; every store call goes through the DbWorker.
#include "config.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <memory>

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

  struct Stats {
    std::int64_t in_flight = 0;
    double rate_per_second = 0;  // current, after throttling; 0 = unlimited
    double configured_rate_per_second = 0;
    bool stopping = false;
    bool paused = false;
  };
  Stats stats() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace kpsd
