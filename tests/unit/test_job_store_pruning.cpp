// The pruning room of the job store (store/job_pruning.hpp) and what runs it: `kpsctl prune`'s
// chunks under a time budget, and the periodic retention (store/pruning.hpp).
#include "core/clock.hpp"
#include "store/db_worker.hpp"
#include "store/pruning.hpp"
#include "store_helpers.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <doctest/doctest.h>

using namespace kpsd;
using namespace kpsd::test;
namespace net = boost::asio;

TEST_CASE("retention prunes finished jobs on its period and stops when asked") {
  auto store = std::make_unique<JobStore>(":memory:");
  std::vector<NewJob> jobs{{"r-done", std::nullopt, std::nullopt},
                           {"r-queued", std::nullopt, std::nullopt}};
  store->commands().enqueue(jobs, unix_ms());
  auto work = store->work_queue().claim_for_delivery(unix_ms(), 1);
  REQUIRE(work.size() == 1);
  AttemptFinish done;
  done.job_id = work[0].job_id;
  done.attempt_n = work[0].attempt_n;
  done.finished_at = unix_ms() - 10;
  done.next_state = JobState::succeeded;
  std::vector<AttemptFinish> finished{done};
  store->work_queue().finish_attempts(finished);
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
    auto count = [](JobQueries& s) { return s.count_by_state(); };
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
  store->commands().enqueue(jobs, 1000);
  auto work = store->work_queue().claim_for_delivery(1000, 3000);
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
  store->work_queue().finish_attempts(finished);
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

TEST_CASE("prune deletes finished jobs older than the cut with their attempts - nothing else") {
  test::TempDir dir;
  std::string path = (dir.path() / "jobs.db").string();
  std::int64_t batch_id = 0;
  {
    JobStore store(path);
    std::vector<NewJob> jobs{job("done-old"), job("failed-old"), job("queued-old"),
                             job("done-new")};
    batch_id = store.commands().enqueue(jobs, 1000, BatchTarget{}).batch_id;
    auto w = store.work_queue().claim_for_delivery(1000, 4);
    REQUIRE(w.size() == 4);
    // done-old and failed-old end at 2000; done-new at 9000; queued-old is given back.
    std::vector<AttemptFinish> f{finish(w[0], JobState::succeeded, 2000),
                                 finish(w[1], JobState::failed, 2000),
                                 finish(w[3], JobState::succeeded, 9000)};
    AttemptFinish back = finish(w[2], JobState::queued, 2000);
    back.release_claim = true;
    f.push_back(back);
    store.work_queue().finish_attempts(f);

    CHECK(store.pruning().prune_finished(5000, 1) == 1);  // chunked: one per call
    CHECK(store.pruning().prune_finished(5000, 100) == 1);
    CHECK(store.pruning().prune_finished(5000, 100) == 0);
    auto counts = store.queries().count_by_state();
    CHECK(counts[JobState::succeeded] == 1);
    CHECK(counts[JobState::failed] == 0);
    CHECK(counts[JobState::queued] == 1);
    // The batch keeps its two remaining jobs.
    auto b = store.queries().find_batch(std::to_string(batch_id));
    REQUIRE(b.has_value());
    CHECK(b->states[JobState::succeeded] + b->states[JobState::queued] == 2);
  }
  CHECK(external_int(path,
                     "SELECT count(*) FROM attempts a WHERE NOT EXISTS "
                     "(SELECT 1 FROM jobs j WHERE j.id = a.job_id)") == 0);
  CHECK(external_int(path, "SELECT count(*) FROM jobs WHERE batch_id IS NOT NULL") == 2);
  {
    JobStore store(path);
    CHECK(store.pruning().prune_finished(10000, 100) == 1);  // done-new now too; queued-old stays
    CHECK(store.queries().find_batch(std::to_string(batch_id)).has_value());
  }
  // A batch whose jobs are all pruned goes with them.
  {
    JobStore store(path);
    auto w = store.work_queue().claim_for_delivery(20000, 1);
    REQUIRE(w.size() == 1);
    std::vector<AttemptFinish> f{finish(w[0], JobState::succeeded, 20000)};
    store.work_queue().finish_attempts(f);
    CHECK(store.pruning().prune_finished(30000, 100) == 1);
    CHECK_FALSE(store.queries().find_batch(std::to_string(batch_id)).has_value());
  }
}
