#pragma once
// Deleting finished jobs: `kpsctl prune --older-than` and the [queue] retention setting.
// Only succeeded, failed and cancelled jobs go, with their attempts and batch memberships.
#include "store/db_worker.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <functional>

namespace kpsd {

// Jobs deleted per transaction: short enough that outcomes waiting for the DB thread are not
// held up for long, long enough that a million old jobs go in a few hundred commits.
inline constexpr std::int64_t prune_chunk = 2000;

// Deletes every finished job that ended before `before` (Unix ms), a chunk per DB call so
// other store work runs in between, for at most `budget` (a million jobs take about 20 s:
// kpsctl asks again rather than wait past its reply timeout). Returns how many went, and
// whether older finished jobs are left.
struct PruneProgress {
  std::int64_t pruned = 0;
  bool more = false;
};
boost::asio::awaitable<PruneProgress> prune_finished_jobs(
    DbWorker& db, std::int64_t before,
    std::chrono::steady_clock::duration budget = std::chrono::steady_clock::duration::max(),
    PruneFilter filter = {});

// Retention: a little after start and then every `period`, deletes finished jobs that ended
// more than `retention` ago, and reports each non-empty pass through `pruned`.
class Retention {
 public:
  Retention(boost::asio::any_io_executor executor, DbWorker& db,
            std::chrono::milliseconds retention, std::chrono::milliseconds period,
            std::function<void(std::int64_t)> pruned);
  boost::asio::awaitable<void> run();  // until stop()
  void stop();

 private:
  DbWorker& db_;
  std::chrono::milliseconds retention_, period_;
  std::function<void(std::int64_t)> pruned_;
  boost::asio::steady_timer timer_;
  bool stopped_ = false;
};

}  // namespace kpsd
