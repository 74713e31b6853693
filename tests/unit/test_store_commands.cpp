// The operator's rooms of the job store (store/job_commands.cpp, job_queries.cpp,
// batch_controls.cpp): enqueue, batches, pages and reads, prune, one unfinished job per
// server, ids never reused.
#include "core/clock.hpp"
#include "result_strings.hpp"
#include "scheduling/job_policy.hpp"
#include "store/db_worker.hpp"
#include "store/job_store.hpp"
#include "store/migrations.hpp"
#include "store/sqlite.hpp"
#include "temp_dir.hpp"
#include "store_helpers.hpp"

#include <doctest/doctest.h>
#include <sqlite3.h>

#include <chrono>
#include <limits>
#include <sys/stat.h>
#include <thread>

using namespace kpsd;
using namespace kpsd::test;

TEST_CASE("enqueue dedupes servers that already have a non-terminal job") {
  JobStore store(":memory:");
  std::vector<NewJob> batch{job("srv-a"), job("srv-b"), job("srv-a")};
  auto r = store.enqueue(batch, 1000);
  REQUIRE(r.size() == 3);
  CHECK_FALSE(r[0].existing);
  CHECK_FALSE(r[1].existing);
  CHECK(r[2].existing);
  CHECK(r[2].id == r[0].id);
  CHECK(store.count_by_state()[JobState::queued] == 2);

  // Once terminal, the same server can be queued again as a new job.
  auto work = store.claim_for_delivery(2000, 10);
  REQUIRE(work.size() == 2);
  std::vector<AttemptFinish> done{finish(work[0], JobState::succeeded, 3000)};
  store.finish_attempts(done);
  std::vector<NewJob> again{job("srv-a")};
  auto r2 = store.enqueue(again, 4000);
  CHECK_FALSE(r2[0].existing);
  CHECK(r2[0].id != r[0].id);
}

TEST_CASE("rows inserted by another process get defaults and are claimed") {
  test::TempDir dir;
  std::string path = dir.file("jobs.db");
  JobStore store(path);
  external_exec(path, "INSERT INTO jobs(server_id) VALUES ('ext-1')");
  auto jobs = store.list({});
  REQUIRE(jobs.size() == 1);
  CHECK(jobs[0].state == JobState::queued);
  CHECK(jobs[0].created_at > 1700000000000);  // a Unix-millisecond time, not 0
  CHECK(jobs[0].next_attempt_at == 0);
  auto w = store.claim_for_delivery(jobs[0].created_at, 10);
  REQUIRE(w.size() == 1);
  CHECK(w[0].server_id == "ext-1");
  // The schema refuses nonsense from outside.
  CHECK_THROWS(external_exec(path, "INSERT INTO jobs(server_id, state) VALUES ('x', 'bogus')"));
  CHECK_THROWS(external_exec(path, "INSERT INTO jobs(server_id) VALUES ('')"));
}

TEST_CASE("list pages by id and filters by state and server") {
  JobStore store(":memory:");
  std::vector<NewJob> batch;
  for (int i = 0; i < 25; ++i) batch.push_back(job("srv-" + std::to_string(i)));
  store.enqueue(batch, 0);
  store.claim_for_delivery(0, 5);

  ListQuery q;
  q.limit = 10;
  auto page1 = store.list(q);
  REQUIRE(page1.size() == 10);
  q.after_id = page1.back().id;
  auto page2 = store.list(q);
  REQUIRE(page2.size() == 10);
  CHECK(page2.front().id == page1.back().id + 1);

  ListQuery running;
  running.state = JobState::running;
  CHECK(store.list(running).size() == 5);
  ListQuery one;
  one.server_id = "srv-7";
  auto found = store.list(one);
  REQUIRE(found.size() == 1);
  CHECK(found[0].server_id == "srv-7");

  auto counts = store.count_by_state();
  CHECK(counts[JobState::running] == 5);
  CHECK(counts[JobState::queued] == 20);
  CHECK(counts[JobState::failed] == 0);
}

TEST_CASE("batches: each enqueue makes one and a later chunk joins it by id") {
  JobStore store(":memory:");
  std::vector<NewJob> first{job("srv-a"), job("srv-b")};
  auto r1 = store.enqueue(first, 1000, BatchTarget{std::nullopt, std::string("night-run")});
  REQUIRE(r1.error.empty());
  std::vector<NewJob> second{job("srv-c")};
  auto r2 = store.enqueue(second, 1001, BatchTarget{r1.batch_id, std::nullopt});
  REQUIRE(r2.error.empty());
  CHECK(r2.batch_id == r1.batch_id);

  // A later batch that names srv-a (still queued) gets the existing job as a member.
  std::vector<NewJob> third{job("srv-a"), job("srv-d")};
  auto r3 = store.enqueue(third, 1002, BatchTarget{});
  REQUIRE(r3.error.empty());
  CHECK(r3.batch_id != r1.batch_id);
  CHECK(r3.jobs[0].existing);
  CHECK(r3.jobs[0].id == r1.jobs[0].id);

  auto by_name = store.find_batch("night-run");
  REQUIRE(by_name.has_value());
  CHECK(by_name->id == r1.batch_id);
  CHECK(by_name->name == "night-run");
  CHECK(by_name->states[JobState::queued] == 3);
  auto by_id = store.find_batch(std::to_string(r3.batch_id));
  REQUIRE(by_id.has_value());
  CHECK_FALSE(by_id->name.has_value());
  CHECK(by_id->states[JobState::queued] == 2);
  CHECK_FALSE(store.find_batch("no-such-batch").has_value());
  CHECK_FALSE(store.find_batch("999").has_value());

  ListQuery q;
  q.batch_id = r3.batch_id;
  auto listed = store.list(q);
  REQUIRE(listed.size() == 2);
  CHECK(listed[0].server_id == "srv-a");
  CHECK(listed[1].server_id == "srv-d");
  q.after_id = listed[0].id;
  CHECK(store.list(q).size() == 1);

  auto recent = store.list_batches(10);
  REQUIRE(recent.size() == 2);
  CHECK(recent[0].id == r3.batch_id);  // newest first

  // A taken name and an unknown id queue nothing.
  std::vector<NewJob> more{job("srv-e")};
  auto taken = store.enqueue(more, 1003, BatchTarget{std::nullopt, std::string("night-run")});
  CHECK(taken.error.find("taken") != std::string::npos);
  auto unknown = store.enqueue(more, 1003, BatchTarget{std::int64_t{999}, std::nullopt});
  CHECK(unknown.error == "no batch 999");
  CHECK(store.count_by_state()[JobState::queued] == 4);
}

TEST_CASE("batch names: printable and not a number") {
  CHECK(validate_batch_name("night-run 2026-11-26"));
  CHECK_FALSE(validate_batch_name(""));
  CHECK_FALSE(validate_batch_name("1234"));
  CHECK_FALSE(validate_batch_name(std::string(65, 'x')));
  CHECK_FALSE(validate_batch_name("a\nb"));
}

TEST_CASE("a bare wait counts the jobs unfinished when it started - not history") {
  JobStore store(":memory:");
  std::vector<NewJob> old{job("old-1"), job("old-2")};
  store.enqueue(old, 1000);
  auto w = store.claim_for_delivery(1000, 2);
  REQUIRE(w.size() == 2);
  AttemptFinish failed = finish(w[0], JobState::failed, 1100);
  AttemptFinish running_on = finish(w[1], JobState::delivered, 1100);
  std::vector<AttemptFinish> f{failed, running_on};
  store.finish_attempts(f);
  std::vector<NewJob> fresh{job("new-1")};
  store.enqueue(fresh, 1200);

  // The wait starts at 2000: old-1 failed before it (history), old-2 and new-1 are unfinished.
  std::int64_t max_id = store.max_job_id();
  REQUIRE(store.min_unfinished_id().has_value());
  std::int64_t min_id = *store.min_unfinished_id();
  CHECK(min_id == 2);  // old-2 (old-1 failed)
  auto counts = store.count_unfinished_since(min_id, max_id, 2000);
  CHECK(counts[JobState::failed] == 0);
  CHECK(counts[JobState::delivered] == 1);
  CHECK(counts[JobState::queued] == 1);

  // new-1 succeeds after the wait started: it is counted as succeeded; a job queued after the
  // start is not counted at all.
  auto w2 = store.claim_for_delivery(2100, 1);
  REQUIRE(w2.size() == 1);
  std::vector<AttemptFinish> f2{finish(w2[0], JobState::succeeded, 2200)};
  store.finish_attempts(f2);
  std::vector<NewJob> later{job("later-1")};
  store.enqueue(later, 2300);
  counts = store.count_unfinished_since(min_id, max_id, 2000);
  CHECK(counts[JobState::succeeded] == 1);
  CHECK(counts[JobState::queued] == 0);
  CHECK(counts[JobState::delivered] == 1);
  CHECK(counts[JobState::failed] == 0);
}

TEST_CASE("prune deletes finished jobs older than the cut with their attempts - nothing else") {
  test::TempDir dir;
  std::string path = (dir.path() / "jobs.db").string();
  std::int64_t batch_id = 0;
  {
    JobStore store(path);
    std::vector<NewJob> jobs{job("done-old"), job("failed-old"), job("queued-old"),
                             job("done-new")};
    batch_id = store.enqueue(jobs, 1000, BatchTarget{}).batch_id;
    auto w = store.claim_for_delivery(1000, 4);
    REQUIRE(w.size() == 4);
    // done-old and failed-old end at 2000; done-new at 9000; queued-old is given back.
    std::vector<AttemptFinish> f{finish(w[0], JobState::succeeded, 2000),
                                 finish(w[1], JobState::failed, 2000),
                                 finish(w[3], JobState::succeeded, 9000)};
    AttemptFinish back = finish(w[2], JobState::queued, 2000);
    back.release_claim = true;
    f.push_back(back);
    store.finish_attempts(f);

    CHECK(store.prune_finished(5000, 1) == 1);  // chunked: one per call
    CHECK(store.prune_finished(5000, 100) == 1);
    CHECK(store.prune_finished(5000, 100) == 0);
    auto counts = store.count_by_state();
    CHECK(counts[JobState::succeeded] == 1);
    CHECK(counts[JobState::failed] == 0);
    CHECK(counts[JobState::queued] == 1);
    // The batch keeps its two remaining jobs.
    auto b = store.find_batch(std::to_string(batch_id));
    REQUIRE(b.has_value());
    CHECK(b->states[JobState::succeeded] + b->states[JobState::queued] == 2);
  }
  CHECK(external_int(path,
                     "SELECT count(*) FROM attempts a WHERE NOT EXISTS "
                     "(SELECT 1 FROM jobs j WHERE j.id = a.job_id)") == 0);
  CHECK(external_int(path, "SELECT count(*) FROM jobs WHERE batch_id IS NOT NULL") == 2);
  {
    JobStore store(path);
    CHECK(store.prune_finished(10000, 100) == 1);  // done-new now too; queued-old stays
    CHECK(store.find_batch(std::to_string(batch_id)).has_value());
  }
  // A batch whose jobs are all pruned goes with them.
  {
    JobStore store(path);
    auto w = store.claim_for_delivery(20000, 1);
    REQUIRE(w.size() == 1);
    std::vector<AttemptFinish> f{finish(w[0], JobState::succeeded, 20000)};
    store.finish_attempts(f);
    CHECK(store.prune_finished(30000, 100) == 1);
    CHECK_FALSE(store.find_batch(std::to_string(batch_id)).has_value());
  }
}

TEST_CASE("batches interleaved in id order keep their own jobs - list - counts - waiting") {
  JobStore store(":memory:");
  std::vector<NewJob> a1{job("a-1"), job("a-2")};
  auto a = store.enqueue(a1, 1000, BatchTarget{std::nullopt, std::string("a")});
  std::vector<NewJob> b1{job("b-1")};
  auto b = store.enqueue(b1, 1001, BatchTarget{std::nullopt, std::string("b")});
  std::vector<NewJob> a2{job("a-3")};
  store.enqueue(a2, 1002, BatchTarget{a.batch_id, std::nullopt});  // after b's job

  ListQuery q;
  q.batch_id = a.batch_id;
  auto listed = store.list(q);
  REQUIRE(listed.size() == 3);
  CHECK(listed[2].server_id == "a-3");
  CHECK(store.count_batch(a.batch_id)[JobState::queued] == 3);
  CHECK(store.count_batch(b.batch_id)[JobState::queued] == 1);
  CHECK(store.batch_unfinished(a.batch_id));

  // b's job ends: b has nothing unfinished although it lies inside a's range.
  auto work = store.claim_for_delivery(2000, 10);
  REQUIRE(work.size() == 4);
  std::vector<AttemptFinish> f;
  for (const auto& w : work) {
    if (w.server_id == "b-1") f.push_back(finish(w, JobState::succeeded, 2100));
  }
  store.finish_attempts(f);
  CHECK_FALSE(store.batch_unfinished(b.batch_id));
  CHECK(store.batch_unfinished(a.batch_id));
  CHECK(store.any_unfinished_between(1, 4));
  CHECK_FALSE(store.any_unfinished_between(3, 3));  // b-1 has id 3
}

TEST_CASE(
    "the front doors' reads: a page by batch name or id with request ids - a job with its "
    "attempts") {
  JobStore store(":memory:");
  store.enqueue(std::vector<NewJob>{job("a-1"), job("a-2")}, 0, BatchTarget{{}, "first"});
  auto second = store.enqueue(std::vector<NewJob>{job("b-1")}, 0, BatchTarget{{}, "second"});
  auto claimed = store.claim_for_delivery(0, 1);  // a-1
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
  store.finish_attempts(std::span<const AttemptFinish>(&f, 1));

  JobPage page = store.list_page({}, std::string("first"), true);
  CHECK_FALSE(page.batch_missing);
  REQUIRE(page.jobs.size() == 2);
  REQUIRE(page.request_ids.size() == 2);
  CHECK(page.request_ids[0] == "req-77");
  CHECK_FALSE(page.request_ids[1].has_value());
  JobPage by_id = store.list_page({}, std::to_string(second.batch_id), false);
  REQUIRE(by_id.jobs.size() == 1);
  CHECK(by_id.jobs[0].server_id == "b-1");
  CHECK(by_id.request_ids.empty());  // not asked for
  CHECK(store.list_page({}, std::string("nope"), true).batch_missing);
  CHECK(store.list_page({}, std::nullopt, false).jobs.size() == 3);

  auto detail = store.job_with_attempts(claimed[0].job_id);
  REQUIRE(detail);
  CHECK(detail->job.state == JobState::retrying);
  REQUIRE(detail->attempts.size() == 1);
  CHECK(detail->attempts[0].http_status == 503);
  CHECK_FALSE(store.job_with_attempts(999));
}

TEST_CASE("one unfinished job per server: a plain-SQL duplicate is refused and a retry too") {
  test::TempDir dir;
  std::string path = dir.file("jobs.db");
  JobStore store(path);
  auto first = store.enqueue(std::vector<NewJob>{job("dup-A")}, 0);
  CHECK_THROWS_WITH(
      external_exec(path, "INSERT INTO jobs(server_id) VALUES ('dup-A')"),
      doctest::Contains("UNIQUE constraint failed: jobs.server_id, jobs.one_unfinished"));
  external_exec(path, "INSERT OR IGNORE INTO jobs(server_id) VALUES ('dup-A'), ('new-B')");
  CHECK(store.list({}).size() == 2);  // the duplicate ignored, the new server queued

  // Job 1 fails; the server is queued again (job 3); retrying job 1 is refused, naming job 3.
  auto w = store.claim_for_delivery(0, 1);
  REQUIRE(w.size() == 1);
  REQUIRE(w[0].job_id == first[0].id);
  AttemptFinish f;
  f.job_id = w[0].job_id;
  f.attempt_n = w[0].attempt_n;
  f.next_state = JobState::failed;
  store.finish_attempts(std::span<const AttemptFinish>(&f, 1));
  auto again = store.enqueue(std::vector<NewJob>{job("dup-A")}, 0);
  REQUIRE_FALSE(again[0].existing);
  std::int64_t other = 0;
  CHECK(store.retry(first[0].id, 1, &other) == RetryOutcome::server_busy);
  CHECK(other == again[0].id);
  CHECK(store.retry_all(JobState::failed, 1)[RetryOutcome::server_busy] == 1);
  CHECK(store.find(first[0].id)->state == JobState::failed);  // left as it was
}

TEST_CASE("ids are never reused: prune the newest jobs then enqueue - jobs and batches go on") {
  JobStore store(":memory:");
  auto first = store.enqueue(std::vector<NewJob>{job("a"), job("b"), job("c")}, 0, {});
  REQUIRE(first.jobs.size() == 3);
  auto w = store.claim_for_delivery(0, 3);
  std::vector<AttemptFinish> done;
  for (const auto& item : w) done.push_back(finish(item, JobState::succeeded, 10));
  store.finish_attempts(done);
  CHECK(store.prune_finished(1000, 100) == 3);  // the newest jobs, and their batch
  CHECK(store.list({}).empty());
  CHECK(store.list_batches(10).empty());
  auto next = store.enqueue(std::vector<NewJob>{job("d")}, 2000, {});
  CHECK(next.batch_id == first.batch_id + 1);
  CHECK(next.jobs.at(0).id == first.jobs.back().id + 1);
}
