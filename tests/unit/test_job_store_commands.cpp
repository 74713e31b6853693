// The commands' room of the job store (store/job_commands.hpp): enqueue into batches, retry,
// one unfinished job per server, ids never reused.
#include "core/clock.hpp"
#include "result_strings.hpp"
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

TEST_CASE("enqueue dedupes servers that already have a non-terminal job") {
  JobStore store(":memory:");
  std::vector<NewJob> batch{job("srv-a"), job("srv-b"), job("srv-a")};
  auto r = store.commands().enqueue(batch, 1000);
  REQUIRE(r.size() == 3);
  CHECK_FALSE(r[0].existing);
  CHECK_FALSE(r[1].existing);
  CHECK(r[2].existing);
  CHECK(r[2].id == r[0].id);
  CHECK(store.queries().count_by_state()[JobState::queued] == 2);

  // Once terminal, the same server can be queued again as a new job.
  auto work = store.work_queue().claim_for_delivery(2000, 10);
  REQUIRE(work.size() == 2);
  std::vector<AttemptFinish> done{finish(work[0], JobState::succeeded, 3000)};
  store.work_queue().finish_attempts(done);
  std::vector<NewJob> again{job("srv-a")};
  auto r2 = store.commands().enqueue(again, 4000);
  CHECK_FALSE(r2[0].existing);
  CHECK(r2[0].id != r[0].id);
}

TEST_CASE("rows inserted by another process get defaults and are claimed") {
  test::TempDir dir;
  std::string path = dir.file("jobs.db");
  JobStore store(path);
  external_exec(path, "INSERT INTO jobs(server_id) VALUES ('ext-1')");
  auto jobs = store.queries().list({});
  REQUIRE(jobs.size() == 1);
  CHECK(jobs[0].state == JobState::queued);
  CHECK(jobs[0].created_at > 1700000000000);  // a Unix-millisecond time, not 0
  CHECK(jobs[0].next_attempt_at == 0);
  auto w = store.work_queue().claim_for_delivery(jobs[0].created_at, 10);
  REQUIRE(w.size() == 1);
  CHECK(w[0].server_id == "ext-1");
  // The schema refuses nonsense from outside.
  CHECK_THROWS(external_exec(path, "INSERT INTO jobs(server_id, state) VALUES ('x', 'bogus')"));
  CHECK_THROWS(external_exec(path, "INSERT INTO jobs(server_id) VALUES ('')"));
}

TEST_CASE("batches: each enqueue makes one and a later chunk joins it by id") {
  JobStore store(":memory:");
  std::vector<NewJob> first{job("srv-a"), job("srv-b")};
  auto r1 =
      store.commands().enqueue(first, 1000, BatchTarget{std::nullopt, std::string("night-run")});
  REQUIRE(r1.error.empty());
  std::vector<NewJob> second{job("srv-c")};
  auto r2 = store.commands().enqueue(second, 1001, BatchTarget{r1.batch_id, std::nullopt});
  REQUIRE(r2.error.empty());
  CHECK(r2.batch_id == r1.batch_id);

  // A later batch that names srv-a (still queued) gets the existing job as a member.
  std::vector<NewJob> third{job("srv-a"), job("srv-d")};
  auto r3 = store.commands().enqueue(third, 1002, BatchTarget{});
  REQUIRE(r3.error.empty());
  CHECK(r3.batch_id != r1.batch_id);
  CHECK(r3.jobs[0].existing);
  CHECK(r3.jobs[0].id == r1.jobs[0].id);

  auto by_name = store.queries().find_batch("night-run");
  REQUIRE(by_name.has_value());
  CHECK(by_name->id == r1.batch_id);
  CHECK(by_name->name == "night-run");
  CHECK(by_name->states[JobState::queued] == 3);
  auto by_id = store.queries().find_batch(std::to_string(r3.batch_id));
  REQUIRE(by_id.has_value());
  CHECK_FALSE(by_id->name.has_value());
  CHECK(by_id->states[JobState::queued] == 2);
  CHECK_FALSE(store.queries().find_batch("no-such-batch").has_value());
  CHECK_FALSE(store.queries().find_batch("999").has_value());

  ListQuery q;
  q.batch_id = r3.batch_id;
  auto listed = store.queries().list(q);
  REQUIRE(listed.size() == 2);
  CHECK(listed[0].server_id == "srv-a");
  CHECK(listed[1].server_id == "srv-d");
  q.after_id = listed[0].id;
  CHECK(store.queries().list(q).size() == 1);

  auto recent = store.queries().list_batches(10);
  REQUIRE(recent.size() == 2);
  CHECK(recent[0].id == r3.batch_id);  // newest first

  // A taken name and an unknown id queue nothing.
  std::vector<NewJob> more{job("srv-e")};
  auto taken =
      store.commands().enqueue(more, 1003, BatchTarget{std::nullopt, std::string("night-run")});
  CHECK(taken.error.find("taken") != std::string::npos);
  auto unknown = store.commands().enqueue(more, 1003, BatchTarget{std::int64_t{999}, std::nullopt});
  CHECK(unknown.error == "no batch 999");
  CHECK(store.queries().count_by_state()[JobState::queued] == 4);
}

TEST_CASE("batch names: printable and not a number") {
  CHECK(validate_batch_name("night-run 2026-11-26"));
  CHECK_FALSE(validate_batch_name(""));
  CHECK_FALSE(validate_batch_name("1234"));
  CHECK_FALSE(validate_batch_name(std::string(65, 'x')));
  CHECK_FALSE(validate_batch_name("a\nb"));
}

TEST_CASE("one unfinished job per server: a plain-SQL duplicate is refused and a retry too") {
  test::TempDir dir;
  std::string path = dir.file("jobs.db");
  JobStore store(path);
  auto first = store.commands().enqueue(std::vector<NewJob>{job("dup-A")}, 0);
  CHECK_THROWS_WITH(
      external_exec(path, "INSERT INTO jobs(server_id) VALUES ('dup-A')"),
      doctest::Contains("UNIQUE constraint failed: jobs.server_id, jobs.one_unfinished"));
  external_exec(path, "INSERT OR IGNORE INTO jobs(server_id) VALUES ('dup-A'), ('new-B')");
  CHECK(store.queries().list({}).size() == 2);  // the duplicate ignored, the new server queued

  // Job 1 fails; the server is queued again (job 3); retrying job 1 is refused, naming job 3.
  auto w = store.work_queue().claim_for_delivery(0, 1);
  REQUIRE(w.size() == 1);
  REQUIRE(w[0].job_id == first[0].id);
  AttemptFinish f;
  f.job_id = w[0].job_id;
  f.attempt_n = w[0].attempt_n;
  f.next_state = JobState::failed;
  store.work_queue().finish_attempts(std::span<const AttemptFinish>(&f, 1));
  auto again = store.commands().enqueue(std::vector<NewJob>{job("dup-A")}, 0);
  REQUIRE_FALSE(again[0].existing);
  std::int64_t other = 0;
  CHECK(store.commands().retry(first[0].id, 1, &other) == RetryOutcome::server_busy);
  CHECK(other == again[0].id);
  CHECK(store.commands().retry_all(JobState::failed, 1)[RetryOutcome::server_busy] == 1);
  CHECK(store.queries().find(first[0].id)->state == JobState::failed);  // left as it was
}

TEST_CASE("ids are never reused: prune the newest jobs then enqueue - jobs and batches go on") {
  JobStore store(":memory:");
  auto first = store.commands().enqueue(std::vector<NewJob>{job("a"), job("b"), job("c")}, 0, {});
  REQUIRE(first.jobs.size() == 3);
  auto w = store.work_queue().claim_for_delivery(0, 3);
  std::vector<AttemptFinish> done;
  for (const auto& item : w) done.push_back(finish(item, JobState::succeeded, 10));
  store.work_queue().finish_attempts(done);
  CHECK(store.pruning().prune_finished(1000, 100) == 3);  // the newest jobs, and their batch
  CHECK(store.queries().list({}).empty());
  CHECK(store.queries().list_batches(10).empty());
  auto next = store.commands().enqueue(std::vector<NewJob>{job("d")}, 2000, {});
  CHECK(next.batch_id == first.batch_id + 1);
  CHECK(next.jobs.at(0).id == first.jobs.back().id + 1);
}
