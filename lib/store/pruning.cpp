#include "store/pruning.hpp"

#include "core/clock.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <spdlog/spdlog.h>

namespace kpsd {

namespace net = boost::asio;

net::awaitable<PruneProgress> prune_finished_jobs(DbWorker& db, std::int64_t before,
                                                  std::chrono::steady_clock::duration budget,
                                                  PruneFilter filter) {
  PruneProgress progress;
  auto started = std::chrono::steady_clock::now();
  for (;;) {
    auto prune_chunk_of_jobs = [before, filter](Pruning& s) {
      return s.prune_finished(before, prune_chunk, filter);
    };
    std::int64_t n = co_await db.call(std::move(prune_chunk_of_jobs));
    progress.pruned += n;
    if (n < prune_chunk) break;
    if (std::chrono::steady_clock::now() - started >= budget) {
      progress.more = true;
      break;
    }
  }
  co_return progress;
}

Retention::Retention(net::any_io_executor executor, DbWorker& db,
                     std::chrono::milliseconds retention, std::chrono::milliseconds period,
                     std::function<void(std::int64_t)> pruned)
    : db_(db),
      retention_(retention),
      period_(period),
      pruned_(std::move(pruned)),
      timer_(std::move(executor)) {}

net::awaitable<void> Retention::run() {
  // First pass a little after start, so start-up (recovery, first claims) goes first.
  timer_.expires_after(std::min<std::chrono::milliseconds>(period_, std::chrono::seconds(60)));
  co_await timer_.async_wait(net::as_tuple(net::use_awaitable));
  while (!stopped_) {
    try {
      PruneProgress p = co_await prune_finished_jobs(db_, unix_ms() - retention_.count());
      if (p.pruned > 0) pruned_(p.pruned);
    } catch (const std::exception& e) {
      // A store outage is reported by the scheduler; retention tries again next period.
      spdlog::warn("retention: could not prune finished jobs: {}", e.what());
    }
    if (stopped_) break;
    timer_.expires_after(period_);
    co_await timer_.async_wait(net::as_tuple(net::use_awaitable));
  }
}

void Retention::stop() {
  stopped_ = true;
  timer_.cancel();
}

}  // namespace kpsd
