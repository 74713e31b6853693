// The reads' room of the job store (store/job_queries.hpp): pages of jobs by state, server and
// batch, a job with its attempts, batch counts, and what a waiting kpsctl asks.
#include "core/clock.hpp"
#include "scheduling/job_policy.hpp"
#include "store/db_worker.hpp"
#include "store/job_store.hpp"
#include "store/migrations.hpp"
#include "store/sqlite.hpp"
#include "store_helpers.hpp"
#include "temp_dir.hpp"

#include <doctest/doctest.h>
#include <sqlite3.h>

#include <chrono>
#include <limits>
#include <sys/stat.h>
#include <thread>

using namespace kpsd;
using namespace kpsd::test;

TEST_CASE("list pages by id and filters by state and server") {
  JobStore store(":memory:");
  std::vector<NewJob> batch;
  for (int i = 0; i < 25; ++i) batch.push_back(job("srv-" + std::to_string(i)));
  store.commands().enqueue(batch, 0);
  store.work_queue().claim_for_delivery(0, 5);

  ListQuery q;
  q.limit = 10;
  auto page1 = store.queries().list(q);
  REQUIRE(page1.size() == 10);
  q.after_id = page1.back().id;
  auto page2 = store.queries().list(q);
  REQUIRE(page2.size() == 10);
  CHECK(page2.front().id == page1.back().id + 1);

  ListQuery running;
  running.state = JobState::running;
  CHECK(store.queries().list(running).size() == 5);
  ListQuery one;
  one.server_id = "srv-7";
  auto found = store.queries().list(one);
  REQUIRE(found.size() == 1);
  CHECK(found[0].server_id == "srv-7");

  auto counts = store.queries().count_by_state();
  CHECK(counts[JobState::running] == 5);
  CHECK(counts[JobState::queued] == 20);
  CHECK(counts[JobState::failed] == 0);
}

TEST_CASE("a bare wait counts the jobs unfinished when it started - not history") {
  JobStore store(":memory:");
  std::vector<NewJob> old{job("old-1"), job("old-2")};
  store.commands().enqueue(old, 1000);
  auto w = store.work_queue().claim_for_delivery(1000, 2);
  REQUIRE(w.size() == 2);
  AttemptFinish failed = finish(w[0], JobState::failed, 1100);
  AttemptFinish running_on = finish(w[1], JobState::delivered, 1100);
  std::vector<AttemptFinish> f{failed, running_on};
  store.work_queue().finish_attempts(f);
  std::vector<NewJob> fresh{job("new-1")};
  store.commands().enqueue(fresh, 1200);

  // The wait starts at 2000: old-1 failed before it (history), old-2 and new-1 are unfinished.
  std::int64_t max_id = store.queries().max_job_id();
  REQUIRE(store.queries().min_unfinished_id().has_value());
  std::int64_t min_id = *store.queries().min_unfinished_id();
  CHECK(min_id == 2);  // old-2 (old-1 failed)
  auto counts = store.queries().count_unfinished_since(min_id, max_id, 2000);
  CHECK(counts[JobState::failed] == 0);
  CHECK(counts[JobState::delivered] == 1);
  CHECK(counts[JobState::queued] == 1);

  // new-1 succeeds after the wait started: it is counted as succeeded; a job queued after the
  // start is not counted at all.
  auto w2 = store.work_queue().claim_for_delivery(2100, 1);
  REQUIRE(w2.size() == 1);
  std::vector<AttemptFinish> f2{finish(w2[0], JobState::succeeded, 2200)};
  store.work_queue().finish_attempts(f2);
  std::vector<NewJob> later{job("later-1")};
  store.commands().enqueue(later, 2300);
  counts = store.queries().count_unfinished_since(min_id, max_id, 2000);
  CHECK(counts[JobState::succeeded] == 1);
  CHECK(counts[JobState::queued] == 0);
  CHECK(counts[JobState::delivered] == 1);
  CHECK(counts[JobState::failed] == 0);
}

TEST_CASE("batches interleaved in id order keep their own jobs - list - counts - waiting") {
  JobStore store(":memory:");
  std::vector<NewJob> a1{job("a-1"), job("a-2")};
  auto a = store.commands().enqueue(a1, 1000, BatchTarget{std::nullopt, std::string("a")});
  std::vector<NewJob> b1{job("b-1")};
  auto b = store.commands().enqueue(b1, 1001, BatchTarget{std::nullopt, std::string("b")});
  std::vector<NewJob> a2{job("a-3")};
  store.commands().enqueue(a2, 1002, BatchTarget{a.batch_id, std::nullopt});  // after b's job

  ListQuery q;
  q.batch_id = a.batch_id;
  auto listed = store.queries().list(q);
  REQUIRE(listed.size() == 3);
  CHECK(listed[2].server_id == "a-3");
  CHECK(store.queries().count_batch(a.batch_id)[JobState::queued] == 3);
  CHECK(store.queries().count_batch(b.batch_id)[JobState::queued] == 1);
  CHECK(store.queries().batch_unfinished(a.batch_id));

  // b's job ends: b has nothing unfinished although it lies inside a's range.
  auto work = store.work_queue().claim_for_delivery(2000, 10);
  REQUIRE(work.size() == 4);
  std::vector<AttemptFinish> f;
  for (const auto& w : work) {
    if (w.server_id == "b-1") f.push_back(finish(w, JobState::succeeded, 2100));
  }
  store.work_queue().finish_attempts(f);
  CHECK_FALSE(store.queries().batch_unfinished(b.batch_id));
  CHECK(store.queries().batch_unfinished(a.batch_id));
  CHECK(store.queries().any_unfinished_between(1, 4));
  CHECK_FALSE(store.queries().any_unfinished_between(3, 3));  // b-1 has id 3
}

TEST_CASE(
    "the front doors' reads: a page by batch name or id with request ids - a job with its "
    "attempts") {
  JobStore store(":memory:");
  store.commands().enqueue(std::vector<NewJob>{job("a-1"), job("a-2")}, 0,
                           BatchTarget{{}, "first"});
  auto second =
      store.commands().enqueue(std::vector<NewJob>{job("b-1")}, 0, BatchTarget{{}, "second"});
  auto claimed = store.work_queue().claim_for_delivery(0, 1);  // a-1
  REQUIRE(claimed.size() == 1);
  AttemptFinish f;
  f.job_id = claimed[0].job_id;
  f.attempt_n = claimed[0].attempt_n;
  f.finished_at = 5;
  f.http_status = 503;
  f.request_id = "req-77";
  f.error_msg = "busy";
  f.next_state = JobState::retrying;
  f.next_attempt_at = 100;
  store.work_queue().finish_attempts(std::span<const AttemptFinish>(&f, 1));

  JobPage page = store.queries().list_page({}, std::string("first"), true);
  CHECK_FALSE(page.batch_missing);
  REQUIRE(page.jobs.size() == 2);
  REQUIRE(page.request_ids.size() == 2);
  CHECK(page.request_ids[0] == "req-77");
  CHECK_FALSE(page.request_ids[1].has_value());
  JobPage by_id = store.queries().list_page({}, std::to_string(second.batch_id), false);
  REQUIRE(by_id.jobs.size() == 1);
  CHECK(by_id.jobs[0].server_id == "b-1");
  CHECK(by_id.request_ids.empty());  // not asked for
  CHECK(store.queries().list_page({}, std::string("nope"), true).batch_missing);
  CHECK(store.queries().list_page({}, std::nullopt, false).jobs.size() == 3);

  auto detail = store.queries().job_with_attempts(claimed[0].job_id);
  REQUIRE(detail);
  CHECK(detail->job.state == JobState::retrying);
  REQUIRE(detail->attempts.size() == 1);
  CHECK(detail->attempts[0].http_status == 503);
  CHECK_FALSE(store.queries().job_with_attempts(999));
}
