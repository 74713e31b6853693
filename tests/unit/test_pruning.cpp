#include "core/clock.hpp"
#include "store/db_worker.hpp"
#include "store/pruning.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <doctest/doctest.h>

using namespace kpsd;
namespace net = boost::asio;

TEST_CASE("retention prunes finished jobs on its period and stops when asked") {
  auto store = std::make_unique<JobStore>(":memory:");
  std::vector<NewJob> jobs{{"r-done", std::nullopt, std::nullopt},
                           {"r-queued", std::nullopt, std::nullopt}};
  store->enqueue(jobs, unix_ms());
  auto work = store->claim_for_delivery(unix_ms(), 1);
  REQUIRE(work.size() == 1);
  AttemptFinish done;
  done.job_id = work[0].job_id;
  done.attempt_n = work[0].attempt_n;
  done.finished_at = unix_ms() - 10;
  done.next_state = JobState::succeeded;
  std::vector<AttemptFinish> finished{done};
  store->finish_attempts(finished);
  DbWorker db(std::move(store));

  net::io_context io;
  std::vector<std::int64_t> passes;
  Retention retention(io.get_executor(), db, std::chrono::milliseconds(0),
                      std::chrono::milliseconds(20), [&](std::int64_t n) {
                        passes.push_back(n);
                        retention.stop();  // one pass is enough
                      });
  bool ended = false;
  net::co_spawn(io, retention.run(), [&](std::exception_ptr e) {
    CHECK_FALSE(e);
    ended = true;
  });
  io.run_for(std::chrono::seconds(10));
  CHECK(ended);  // stop() ended run() and io.run_for returned at once
  REQUIRE(passes.size() == 1);
  CHECK(passes[0] == 1);
  std::map<JobState, std::int64_t> counts;
  auto read_counts = [&]() -> net::awaitable<void> {
    auto count = [](JobStore& s) { return s.count_by_state(); };
    counts = co_await db.call(std::move(count));
  };
  io.restart();
  net::co_spawn(io, read_counts(), net::detached);
  io.run_for(std::chrono::seconds(10));
  CHECK(counts[JobState::succeeded] == 0);
  CHECK(counts[JobState::queued] == 1);
}

TEST_CASE("a prune with a used-up time budget stops after a chunk and says more is left") {
  auto store = std::make_unique<JobStore>(":memory:");
  std::vector<NewJob> jobs;
  for (int i = 0; i < 2500; ++i)
    jobs.push_back({"p-" + std::to_string(i), std::nullopt, std::nullopt});
  store->enqueue(jobs, 1000);
  auto work = store->claim_for_delivery(1000, 3000);
  REQUIRE(work.size() == 2500);
  std::vector<AttemptFinish> finished;
  for (const auto& w : work) {
    AttemptFinish f;
    f.job_id = w.job_id;
    f.attempt_n = w.attempt_n;
    f.finished_at = 2000;
    f.next_state = JobState::succeeded;
    finished.push_back(f);
  }
  store->finish_attempts(finished);
  DbWorker db(std::move(store));
  net::io_context io;
  std::vector<PruneProgress> runs;
  auto prune_twice = [&]() -> net::awaitable<void> {
    runs.push_back(co_await prune_finished_jobs(db, 5000, std::chrono::seconds(0)));
    runs.push_back(co_await prune_finished_jobs(db, 5000, std::chrono::seconds(0)));
  };
  net::co_spawn(io, prune_twice(), net::detached);
  io.run_for(std::chrono::seconds(30));
  REQUIRE(runs.size() == 2);
  CHECK(runs[0].pruned == prune_chunk);
  CHECK(runs[0].more);
  CHECK(runs[1].pruned == 2500 - prune_chunk);
  CHECK_FALSE(runs[1].more);
}
