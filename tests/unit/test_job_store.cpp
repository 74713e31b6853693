#include "core/clock.hpp"
#include "scheduling/job_policy.hpp"
#include "store/db_worker.hpp"
#include "store/job_store.hpp"
#include "store/migrations.hpp"
#include "store/sqlite.hpp"
#include "temp_dir.hpp"

#include <doctest/doctest.h>
#include <sqlite3.h>

#include <chrono>
#include <limits>
#include <sys/stat.h>
#include <thread>

using namespace kpsd;

namespace {

// Runs SQL on a second connection, as `sqlite3` or another process would.
void external_exec(const std::string& path, const std::string& text) {
  sql::Database db(path);
  db.exec("PRAGMA busy_timeout = 5000");
  db.exec(text);
}

std::int64_t external_int(const std::string& path, const std::string& query) {
  sql::Database db(path);
  sql::Statement s(db, query);
  REQUIRE(s.step());
  return s.column_int(0);
}

NewJob job(std::string id) { return NewJob{std::move(id), std::nullopt, std::nullopt}; }

AttemptFinish finish(const DeliveryWork& w, JobState next, std::int64_t at) {
  AttemptFinish f;
  f.job_id = w.job_id;
  f.attempt_n = w.attempt_n;
  f.finished_at = at;
  f.latency_ms = 12;
  f.http_status = 202;
  f.request_id = "req-1";
  f.task_id = "task-1";
  f.delivery_status = "SUCCESS";
  f.next_state = next;
  f.next_attempt_at = at + 100;
  return f;
}

PollFinish poll_finish(std::int64_t id, std::int64_t at, std::string status, JobState next,
                       std::int64_t next_at) {
  PollFinish f;
  f.job_id = id;
  f.at = at;
  f.task_status = std::move(status);
  f.next_state = next;
  f.next_attempt_at = next_at;
  return f;
}

}  // namespace

TEST_CASE("migrations: a new database gets every migration in order once") {
  test::TempDir dir;
  std::string path = dir.file("jobs.db");
  int newest = embedded_migrations().back().version;
  {
    JobStore store(path);
    CHECK(store.schema_version() == newest);
  }
  CHECK(external_int(path, "PRAGMA user_version") == newest);
  CHECK(external_int(path,
                     "SELECT count(*) FROM sqlite_master WHERE name IN "
                     "('jobs','attempts','job_secrets')") == 3);
  {
    sql::Database db(path);
    sql::Statement s(db, "PRAGMA journal_mode");
    REQUIRE(s.step());
    CHECK(s.column_text(0) == "wal");
  }
  JobStore again(path);  // re-opening applies nothing and keeps the data
  CHECK(again.schema_version() == newest);
}

TEST_CASE("migrations: a failing migration leaves the database at the previous version") {
  sql::Database db(":memory:");
  const Migration good[] = {{1, "0001_a.sql", "CREATE TABLE a (x INT);"}};
  CHECK(apply_migrations(db, good) == 1);
  const Migration bad[] = {{1, "0001_a.sql", "CREATE TABLE a (x INT);"},
                           {2, "0002_b.sql", "CREATE TABLE b (y INT); SELECT * FROM nowhere;"}};
  CHECK_THROWS_WITH_AS(apply_migrations(db, bad), doctest::Contains("0002_b.sql"), sql::Error);
  CHECK(db.pragma_int("user_version") == 1);
  sql::Statement s(db, "SELECT count(*) FROM sqlite_master WHERE name = 'b'");
  REQUIRE(s.step());
  CHECK(s.column_int(0) == 0);  // the half-applied migration was rolled back
}

TEST_CASE("migrations: a database newer than this kpsd is refused") {
  sql::Database db(":memory:");
  db.exec("PRAGMA user_version = 999");
  const Migration one[] = {{1, "0001_a.sql", "CREATE TABLE a (x INT);"}};
  CHECK_THROWS_WITH(apply_migrations(db, one), doctest::Contains("newer than this kpsd"));
}

TEST_CASE("the database file is created private (0600)") {
  test::TempDir dir;
  std::string path = dir.file("jobs.db");
  JobStore store(path);
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
}

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

TEST_CASE("claim → running with an open attempt / finish → delivered / poll → succeeded") {
  JobStore store(":memory:");
  std::vector<NewJob> batch{job("srv-1"), job("srv-2")};
  store.enqueue(batch, 1000);

  CHECK(store.claim_for_delivery(999, 10).empty());  // not due before its time
  auto work = store.claim_for_delivery(1000, 1);
  REQUIRE(work.size() == 1);
  CHECK(work[0].server_id == "srv-1");
  CHECK(work[0].attempt_n == 1);
  CHECK(work[0].attempts_used == 0);
  CHECK(store.find(work[0].job_id)->state == JobState::running);
  auto attempts = store.attempts_of(work[0].job_id);
  REQUIRE(attempts.size() == 1);
  CHECK_FALSE(attempts[0].finished_at.has_value());

  std::vector<AttemptFinish> f{finish(work[0], JobState::delivered, 1500)};
  store.finish_attempts(f);
  Job j = *store.find(work[0].job_id);
  CHECK(j.state == JobState::delivered);
  CHECK(j.attempts == 1);
  CHECK(j.task_id == "task-1");
  CHECK(j.delivery_status == "SUCCESS");
  attempts = store.attempts_of(j.id);
  CHECK(attempts[0].finished_at == 1500);
  CHECK(attempts[0].http_status == 202);
  CHECK(attempts[0].request_id == "req-1");
  CHECK(attempts[0].latency_ms == 12);

  CHECK(store.claim_for_poll(1599, 5000, 10).empty());
  auto polls = store.claim_for_poll(1600, 5000, 10);
  REQUIRE(polls.size() == 1);
  CHECK(polls[0].task_id == "task-1");
  CHECK(polls[0].delivered_at == 1500);
  CHECK(store.claim_for_poll(1600, 5000, 10).empty());  // leased: not polled twice

  CHECK(polls[0].lease_until == 5000);

  PollFinish running = poll_finish(j.id, 1700, "RUNNING_UNBIND", JobState::delivered, 1800);
  running.lease_until = polls[0].lease_until;
  std::vector<PollFinish> p1{running};
  store.finish_polls(p1);
  CHECK(store.find(j.id)->task_status == "RUNNING_UNBIND");
  CHECK(store.next_due_at() == 1000);  // srv-2 is still queued since 1000

  auto again = store.claim_for_poll(1800, 6000, 10);
  REQUIRE(again.size() == 1);
  // A late answer from the first poll (its lease is gone) changes nothing.
  PollFinish late = poll_finish(j.id, 1850, "FAILED_UNBIND", JobState::retrying, 1900);
  late.lease_until = polls[0].lease_until;
  std::vector<PollFinish> stale{late};
  store.finish_polls(stale);
  CHECK(store.find(j.id)->state == JobState::delivered);
  CHECK(store.find(j.id)->task_status == "RUNNING_UNBIND");

  PollFinish success = poll_finish(j.id, 1900, "SUCCESS_UNBIND", JobState::succeeded, 0);
  success.lease_until = again[0].lease_until;
  std::vector<PollFinish> p2{success};
  store.finish_polls(p2);
  j = *store.find(j.id);
  CHECK(j.state == JobState::succeeded);
  CHECK(j.task_status == "SUCCESS_UNBIND");
}

TEST_CASE("a retrying job becomes due again at next_attempt_at") {
  JobStore store(":memory:");
  std::vector<NewJob> batch{job("srv-r")};
  store.enqueue(batch, 0);
  auto w = store.claim_for_delivery(0, 1);
  AttemptFinish f = finish(w[0], JobState::retrying, 10);
  f.next_attempt_at = 500;
  f.error_msg = "HTTP 503";
  std::vector<AttemptFinish> fs{f};
  store.finish_attempts(fs);
  CHECK(store.find(w[0].job_id)->state == JobState::retrying);
  CHECK(store.claim_for_delivery(499, 10).empty());
  auto again = store.claim_for_delivery(500, 10);
  REQUIRE(again.size() == 1);
  CHECK(again[0].attempt_n == 2);
  CHECK(again[0].attempts_used == 1);
}

TEST_CASE("a replace-form job hands its type key and port to the call") {
  JobStore store(":memory:");
  std::vector<NewJob> batch{NewJob{"srv-s", 2222, JobAuth{"password", Secret("hunter2")}}};
  auto r = store.enqueue(batch, 0);
  auto w = store.claim_for_delivery(0, 1);
  REQUIRE(w.size() == 1);
  REQUIRE(w[0].auth.has_value());
  CHECK(w[0].auth->type == "password");
  CHECK(w[0].auth->key.reveal() == "hunter2");
  CHECK(w[0].port == 2222);
  Job j = *store.find(r[0].id);
  CHECK(j.auth_type == "password");

  std::vector<AttemptFinish> fs{finish(w[0], JobState::failed, 5)};
  store.finish_attempts(fs);
  CHECK(store.find(r[0].id)->state == JobState::failed);
}

TEST_CASE("secrets are deleted from the file when the job ends") {
  test::TempDir dir;
  std::string path = dir.file("jobs.db");
  JobStore store(path);
  std::vector<NewJob> batch{NewJob{"srv-s", std::nullopt, JobAuth{"keypair", Secret("KEY")}}};
  store.enqueue(batch, 0);
  CHECK(external_int(path, "SELECT count(*) FROM job_secrets") == 1);
  auto w = store.claim_for_delivery(0, 1);
  std::vector<AttemptFinish> fs{finish(w[0], JobState::succeeded, 5)};
  store.finish_attempts(fs);
  CHECK(external_int(path, "SELECT count(*) FROM job_secrets") == 0);
}

TEST_CASE("recovery after a crash: running jobs go back to queued their attempt is closed") {
  JobStore store(":memory:");
  std::vector<NewJob> batch{job("srv-1"), job("srv-2")};
  store.enqueue(batch, 0);
  auto w = store.claim_for_delivery(0, 2);
  REQUIRE(w.size() == 2);
  CHECK(store.recover_after_restart(50, 8) == 2);
  for (const auto& item : w) {
    Job j = *store.find(item.job_id);
    CHECK(j.state == JobState::queued);
    auto a = store.attempts_of(item.job_id);
    REQUIRE(a.size() == 1);
    CHECK(a[0].finished_at == 50);
    CHECK(a[0].error_msg == "outcome lost: daemon stopped");
  }
  auto again = store.claim_for_delivery(50, 2);
  CHECK(again.size() == 2);
  CHECK(again[0].attempt_n == 2);
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

TEST_CASE("the store refuses a file that is not a kpsd database and leaves it as it was") {
  test::TempDir dir;
  // Another application's database, in rollback-journal mode.
  std::string other = dir.file("other.db");
  external_exec(other, "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)");
  std::string before = test::TempDir::slurp_file(other);
  try {
    JobStore store(other);
    FAIL("opened another application's database");
  } catch (const std::runtime_error& e) {
    std::string what = e.what();
    CHECK(what.find(other) != std::string::npos);
    CHECK(what.find("is not a kpsd database") != std::string::npos);
    CHECK(what.find("customers") != std::string::npos);
  }
  CHECK(test::TempDir::slurp_file(other) == before);  // byte for byte: no WAL switch
  CHECK_FALSE(std::filesystem::exists(other + "-wal"));

  std::string text = dir.write("notes.txt", "just some notes, not a database\n");
  CHECK_THROWS_WITH_AS(JobStore{text}, doctest::Contains("is not an SQLite database"),
                       std::runtime_error);
  CHECK(test::TempDir::slurp_file(text) == "just some notes, not a database\n");

  // Empty files and kpsd's own databases open; a new one carries kpsd's application id.
  std::string empty = dir.write("empty.db", "");
  { JobStore store(empty); }
  CHECK(external_int(empty, "PRAGMA application_id") == 1802531684);
  { JobStore again(empty); }
}

TEST_CASE("a kpsd database written before the application id is recognised and upgraded") {
  test::TempDir dir;
  std::string path = dir.file("old.db");
  {
    sql::Database db(path);
    auto all = embedded_migrations();
    apply_migrations(db, all.subspan(0, 3));  // as kpsd 0.1 with migrations 1-3 left it
    db.exec("INSERT INTO jobs (server_id) VALUES ('old-1')");
  }
  CHECK(external_int(path, "PRAGMA application_id") == 0);
  JobStore store(path);
  CHECK(store.schema_version() >= 4);
  CHECK(external_int(path, "PRAGMA application_id") == 1802531684);
  CHECK(store.list({}).size() == 1);
}

TEST_CASE("attempts are used at claim: a job whose calls keep killing kpsd fails at the limit") {
  JobStore store(":memory:");
  std::vector<NewJob> batch{job("srv-crash")};
  store.enqueue(batch, 0);
  for (int crash = 1; crash <= 3; ++crash) {
    auto w = store.claim_for_delivery(crash * 100, 1);
    REQUIRE(w.size() == 1);
    CHECK(w[0].attempts_used == crash - 1);
    CHECK(store.find(w[0].job_id)->attempts == crash);  // counted before the call
    store.recover_after_restart(crash * 100 + 50, 3);
  }
  Job j = store.list({}).front();
  CHECK(j.state == JobState::failed);
  CHECK(j.attempts == 3);
  CHECK(j.error_msg ==
        std::string(maybe_done_prefix) + "gave up after 3 attempts: outcome lost: daemon stopped");
  CHECK(store.attempts_of(j.id).size() == 3);
}

TEST_CASE("an outcome that does not count gives back the attempt taken at claim") {
  JobStore store(":memory:");
  std::vector<NewJob> batch{job("srv-429")};
  store.enqueue(batch, 0);
  auto w = store.claim_for_delivery(0, 1);
  AttemptFinish f = finish(w[0], JobState::retrying, 10);
  f.counts_attempt = false;
  std::vector<AttemptFinish> fs{f};
  store.finish_attempts(fs);
  CHECK(store.find(w[0].job_id)->attempts == 0);
}

TEST_CASE("outcomes are fenced: an old call's outcome does not move the job") {
  JobStore store(":memory:");
  std::vector<NewJob> batch{job("srv-fence")};
  store.enqueue(batch, 0);
  auto first = store.claim_for_delivery(0, 1);
  // Cancelled while its call is in flight: a retry must wait for that call to end.
  CHECK(store.cancel(first[0].job_id, 5) == CancelOutcome::cancelled);
  CHECK(store.retry(first[0].job_id, 6) == RetryOutcome::call_in_flight);
  std::vector<AttemptFinish> late{finish(first[0], JobState::delivered, 20)};
  store.finish_attempts(late);
  Job j = *store.find(first[0].job_id);
  CHECK(j.state == JobState::cancelled);                   // the late 202 did not revive it
  CHECK(store.attempts_of(j.id)[0].finished_at == 20);     // but its attempt row is closed
  CHECK(store.retry(j.id, 30) == RetryOutcome::requeued);  // now it may go again
  auto second = store.claim_for_delivery(30, 1);
  REQUIRE(second.size() == 1);
  CHECK(second[0].attempt_n == 2);
  // A duplicate outcome for attempt 1 arriving now changes nothing.
  std::vector<AttemptFinish> stale{finish(first[0], JobState::failed, 40)};
  store.finish_attempts(stale);
  CHECK(store.find(j.id)->state == JobState::running);
}

TEST_CASE("a replace-form job whose key is gone is failed at claim and never handed out") {
  test::TempDir dir;
  std::string path = dir.file("jobs.db");
  JobStore store(path);
  std::vector<NewJob> batch{NewJob{"srv-key", std::nullopt, JobAuth{"keypair", Secret("k")}}};
  auto r = store.enqueue(batch, 10);
  auto w = store.claim_for_delivery(10, 1);
  REQUIRE(w.size() == 1);
  std::vector<AttemptFinish> back{finish(w[0], JobState::retrying, 11)};
  back[0].next_attempt_at = 12;
  store.finish_attempts(back);
  // The key is gone while the job is due again (as after "task still pending" deleted it and
  // a re-check then saw the task fail).
  external_exec(path, "DELETE FROM job_secrets WHERE job_id = " + std::to_string(r[0].id));
  CHECK(store.claim_for_delivery(20, 10).empty());
  Job j = *store.find(r[0].id);
  CHECK(j.state == JobState::failed);
  CHECK(j.error_msg == "key no longer held: enqueue again with the key");
  CHECK(store.attempts_of(j.id).size() == 1);  // no second call
}

TEST_CASE("outcomes and the next claims commit in one transaction - polls first") {
  test::TempDir dir;
  std::string path = dir.file("jobs.db");
  JobStore store(path);
  std::vector<NewJob> batch{job("a"), job("b"), job("c"), job("d")};
  store.enqueue(batch, 1000);
  auto first = store.claim_for_delivery(1000, 2);  // a and b
  REQUIRE(first.size() == 2);
  // a is delivered (its poll is due at once), b succeeds; claim 2 more in the same commit.
  auto delivered = finish(first[0], JobState::delivered, 1100);
  delivered.next_attempt_at = 1100;
  std::vector<AttemptFinish> outcomes{delivered, finish(first[1], JobState::succeeded, 1100)};
  Claimed next = store.finish_and_claim(outcomes, ClaimRequest{1200, 9000, 2});
  REQUIRE(next.polls.size() == 1);  // a's task poll comes first ...
  CHECK(next.polls[0].job_id == first[0].job_id);
  CHECK(next.polls[0].lease_until == 9000);
  REQUIRE(next.deliveries.size() == 1);  // ... then c
  CHECK(next.deliveries[0].server_id == "c");
  CHECK(store.find(next.deliveries[0].job_id)->state == JobState::running);
  CHECK(store.find(first[1].job_id)->state == JobState::succeeded);
  CHECK(external_int(path, "SELECT count(*) FROM attempts WHERE finished_at IS NULL") == 1);

  // A claim of nothing records the outcomes alone.
  std::vector<AttemptFinish> last{finish(next.deliveries[0], JobState::succeeded, 1300)};
  Claimed none = store.finish_and_claim(last, ClaimRequest{});
  CHECK(none.polls.empty());
  CHECK(none.deliveries.empty());
  CHECK(store.find(next.deliveries[0].job_id)->state == JobState::succeeded);
  CHECK(store.find(first[0].job_id)->state == JobState::delivered);
  CHECK(store.count_by_state()[JobState::queued] == 1);  // d was not claimed
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
  CHECK(validate_batch_name("night-run 2026-11-26").empty());
  CHECK_FALSE(validate_batch_name("").empty());
  CHECK_FALSE(validate_batch_name("1234").empty());
  CHECK_FALSE(validate_batch_name(std::string(65, 'x')).empty());
  CHECK_FALSE(validate_batch_name("a\nb").empty());
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

namespace {

std::int64_t file_size(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? st.st_size : 0;
}

// 1,000 jobs enqueued, claimed and delivered: three transactions of many pages each.
void run_thousand_jobs(JobStore& store, int round) {
  std::vector<NewJob> jobs;
  for (int i = 0; i < 1000; ++i) jobs.push_back(job("wal-" + std::to_string(round * 1000 + i)));
  store.enqueue(jobs, 0);
  std::vector<AttemptFinish> done;
  for (const DeliveryWork& w : store.claim_for_delivery(1, 1000)) {
    AttemptFinish f;
    f.job_id = w.job_id;
    f.attempt_n = w.attempt_n;
    f.finished_at = 2;
    f.http_status = 202;
    f.task_id = "task-" + std::to_string(w.job_id);
    f.next_state = JobState::delivered;
    f.next_attempt_at = 3;
    done.push_back(f);
  }
  store.finish_attempts(done);
}

}  // namespace

TEST_CASE("the WAL shrinks back under its bound once a reader that held it for 16000 jobs closes") {
  test::TempDir dir;
  std::string path = dir.file("jobs.db");
  std::string wal = path + "-wal";
  auto store = std::make_unique<JobStore>(path);
  // A reader holding its snapshot, as an sqlite3 shell inside BEGIN does: no checkpoint can
  // restart the log meanwhile, so the WAL grows with every commit.
  auto reader = std::make_unique<sql::Database>(path);
  reader->exec("BEGIN");
  {
    sql::Statement count(*reader, "SELECT count(*) FROM jobs");
    REQUIRE(count.step());
  }
  for (int round = 0; round < 16; ++round) run_thousand_jobs(*store, round);
  std::int64_t grown = file_size(wal);
  MESSAGE("WAL after 16000 jobs under a reader: " << grown / 1024 << " KiB");
  REQUIRE(grown > JobStore::wal_size_limit);
  // Still held: the trim gives up at once and leaves the WAL as it is.
  CHECK(store->trim_wal() == grown);
  reader->exec("COMMIT");
  reader.reset();
  // Nothing more is written: the DB thread's periodic trim alone shrinks it.
  DbWorker worker(std::move(store), std::chrono::milliseconds(20));
  for (int i = 0; i < 500 && file_size(wal) > JobStore::wal_size_limit; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  CHECK(file_size(wal) <= JobStore::wal_size_limit);
}

TEST_CASE(
    "one unfinished job per server: migration 0007 cancels later duplicates naming the first") {
  test::TempDir dir;
  std::string path = dir.file("dups.db");
  {
    sql::Database db(path);
    apply_migrations(db, embedded_migrations().subspan(0, 6));  // as kpsd with 1-6 left it
    db.exec(
        "INSERT INTO jobs (server_id) VALUES ('dup-A'), ('dup-A'), ('solo'), ('dup-A');"
        "INSERT INTO jobs (server_id, state) VALUES ('dup-A', 'succeeded');"
        "INSERT INTO jobs (server_id, state) VALUES ('dup-B', 'failed'), ('dup-B', 'retrying'),"
        " ('dup-B', 'delivered');");
  }
  JobStore store(path);
  CHECK(store.schema_version() >= 7);
  auto jobs = store.list({});
  REQUIRE(jobs.size() == 8);
  CHECK(jobs[0].state == JobState::queued);  // dup-A, the oldest, stays
  CHECK(jobs[1].state == JobState::cancelled);
  CHECK(jobs[1].error_msg == "duplicate of job 1");
  CHECK(jobs[2].state == JobState::queued);  // solo
  CHECK(jobs[3].error_msg == "duplicate of job 1");
  CHECK(jobs[4].state == JobState::succeeded);  // finished jobs are history: untouched
  CHECK(jobs[5].state == JobState::failed);
  CHECK(jobs[6].state == JobState::retrying);  // dup-B's oldest unfinished job
  CHECK(jobs[7].state == JobState::cancelled);
  CHECK(jobs[7].error_msg == "duplicate of job 7");
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

TEST_CASE("migration 0008 keeps every id and attempt and makes ids never reused") {
  test::TempDir dir;
  std::string path = dir.file("old.db");
  {
    sql::Database db(path);
    db.exec("PRAGMA foreign_keys = ON");
    apply_migrations(db, embedded_migrations().subspan(0, 7));  // as kpsd with 1-7 left it
    db.exec(
        "INSERT INTO batches (id, name) VALUES (5, 'five');"
        "INSERT INTO jobs (id, server_id, state, batch_id) VALUES (3, 's3', 'failed', 5),"
        " (9, 's9', 'queued', 5);"
        "INSERT INTO attempts (job_id, n, started_at, error_msg) VALUES (3, 1, 7, 'gone'),"
        " (9, 1, 8, 'outcome lost: daemon stopped');"
        "INSERT INTO batch_jobs (batch_id, job_id) VALUES (5, 9);");
  }
  JobStore store(path);
  CHECK(store.schema_version() >= 8);
  auto jobs = store.list({});
  REQUIRE(jobs.size() == 2);
  CHECK(jobs[0].id == 3);
  CHECK(jobs[1].id == 9);
  CHECK(store.attempts_of(3).at(0).error_msg == "gone");
  CHECK(store.attempts_of(9).at(0).error_msg == "outcome lost: daemon stopped");
  CHECK(external_int(path, "SELECT count(*) FROM batch_jobs WHERE job_id = 9") == 1);
  CHECK(external_int(path, "SELECT n FROM job_counts WHERE state = 'queued'") == 1);
  // Foreign keys hold after the rebuild: deleting a job still takes its attempts with it.
  CHECK(external_int(path, "PRAGMA foreign_keys") == 0);  // (a fresh connection's default)
  CHECK(store.prune_finished(std::numeric_limits<std::int64_t>::max(), 10) == 1);
  CHECK(external_int(path, "SELECT count(*) FROM attempts WHERE job_id = 3") == 0);
  external_exec(path, "DELETE FROM jobs WHERE id = 9");
  auto next = store.enqueue(std::vector<NewJob>{job("s10")}, 0, {});
  CHECK(next.jobs.at(0).id == 10);
  CHECK(next.batch_id == 6);
}

TEST_CASE("an unknown outcome is kept for the look: recovery - claim - a decision without a call") {
  JobStore store(":memory:");
  store.enqueue(std::vector<NewJob>{job("srv")}, 0);
  auto w = store.claim_for_delivery(100, 1);
  REQUIRE(w.size() == 1);
  CHECK_FALSE(w[0].unknown_since);
  CHECK(w[0].claimed_at == 100);
  store.recover_after_restart(200, 8);  // its call was in flight at a crash
  auto again = store.claim_for_delivery(300, 1);
  REQUIRE(again.size() == 1);
  CHECK(again[0].unknown_since == 100);  // the lost call's start
  CHECK(again[0].lost_at == 200);        // learned at the restart
  CHECK(again[0].known_tasks.empty());
  CHECK(again[0].attempt_n == 2);

  // The look adopts the running task: no call, so attempt 2 is deleted and given back.
  AttemptFinish adopt;
  adopt.job_id = again[0].job_id;
  adopt.attempt_n = again[0].attempt_n;
  adopt.finished_at = 310;
  adopt.no_call = true;
  adopt.look = "outcome unknown; adopted running task t-1";
  adopt.task_id = "t-1";
  adopt.next_state = JobState::delivered;
  adopt.next_attempt_at = 400;
  store.finish_attempts(std::span<const AttemptFinish>(&adopt, 1));
  Job j = *store.find(adopt.job_id);
  CHECK(j.state == JobState::delivered);
  CHECK(j.task_id == "t-1");
  CHECK(j.attempts == 1);  // the lost call's attempt only
  auto attempts = store.attempts_of(adopt.job_id);
  REQUIRE(attempts.size() == 1);
  CHECK(attempts[0].look == "outcome unknown; adopted running task t-1");
  auto polls = store.claim_for_poll(400, 500, 1);
  REQUIRE(polls.size() == 1);
  CHECK(polls[0].task_id == "t-1");
}

TEST_CASE("maybe done: a job that failed after a call went again past an unknown outcome") {
  JobStore store(":memory:");
  store.enqueue(std::vector<NewJob>{job("m1"), job("plain")}, 0);
  auto w = store.claim_for_delivery(0, 2);
  REQUIRE(w.size() == 2);
  std::vector<AttemptFinish> fs;
  for (const auto& item : w) {
    AttemptFinish f = finish(item, JobState::failed, 10);
    f.sent_after_unknown = item.server_id == "m1";
    fs.push_back(f);
  }
  store.finish_attempts(fs);
  ListQuery q;
  q.maybe_done = true;
  auto maybe = store.list(q);
  REQUIRE(maybe.size() == 1);
  CHECK(maybe[0].server_id == "m1");
  CHECK(maybe[0].maybe_done);
  CHECK(store.list({}).size() == 2);
  q.server_id = "plain";
  CHECK(store.list(q).empty());
}

TEST_CASE("recovery drops the dead process's poll leases and restarts a look's waits") {
  JobStore store(":memory:");
  store.enqueue(std::vector<NewJob>{job("polled")}, 0);
  auto w = store.claim_for_delivery(0, 1);
  REQUIRE(w.size() == 1);
  AttemptFinish f = finish(w[0], JobState::delivered, 10);
  store.finish_attempts(std::span<const AttemptFinish>(&f, 1));
  REQUIRE(store.claim_for_poll(200, 600000, 1).size() == 1);  // leased for ten minutes
  CHECK(store.claim_for_poll(300, 600000, 1).empty());
  store.recover_after_restart(400, 8);
  auto again = store.claim_for_poll(400, 500, 1);  // the lease of the dead process is gone
  REQUIRE(again.size() == 1);
  CHECK(again[0].job_id == w[0].job_id);
}

TEST_CASE("a job that fails with its last call's outcome unknown is maybe done") {
  JobStore store(":memory:");
  store.enqueue(std::vector<NewJob>{job("lost")}, 0);
  auto w = store.claim_for_delivery(0, 1);
  REQUIRE(w.size() == 1);
  store.recover_after_restart(50, 1);  // its only attempt was in flight: gave up
  Job j = *store.find(w[0].job_id);
  CHECK(j.state == JobState::failed);
  CHECK(j.maybe_done);
  REQUIRE(j.error_msg);
  CHECK(j.error_msg->starts_with("maybe done (an earlier call's outcome was unknown"));
}

TEST_CASE("every job the store ends is counted once - when its transaction commits") {
  // Issue 30 item 9: a replace-form job failed at its claim (key gone) and a job failed by the
  // recovery after a restart never reached kpsd_jobs_finished_total; now every ending is
  // counted where the store commits it (job_endings.hpp), whatever statement wrote it.
  test::TempDir dir;
  std::string path = dir.file("jobs.db");
  JobStore store(path);
  auto ended = [&](JobState s) { return store.endings()->totals()[JobEndings::index(s)]; };
  // A call's outcome.
  store.enqueue(std::vector<NewJob>{job("ok-1")}, 1);
  auto w = store.claim_for_delivery(2, 1);
  REQUIRE(w.size() == 1);
  std::vector<AttemptFinish> done{finish(w[0], JobState::succeeded, 3)};
  store.finish_and_claim(done, ClaimRequest{});
  CHECK(ended(JobState::succeeded) == 1);
  // A key gone at the claim.
  std::vector<NewJob> keyed{NewJob{"k-1", std::nullopt, JobAuth{"keypair", Secret("k")}}};
  store.enqueue(keyed, 10);
  {
    sql::Database db(path);
    db.exec("DELETE FROM job_secrets");
  }
  CHECK(store.claim_for_delivery(20, 5).empty());
  CHECK(ended(JobState::failed) == 1);
  // The recovery after a restart, past max_attempts.
  store.enqueue(std::vector<NewJob>{job("r-1"), job("r-2")}, 30);
  REQUIRE(store.claim_for_delivery(40, 2).size() == 2);
  CHECK(store.recover_after_restart(50, 1) == 2);
  CHECK(ended(JobState::failed) == 3);
  // Cancels: one, then the rest of a batch; a job already ended is not counted again.
  auto c =
      store.enqueue(std::vector<NewJob>{job("c-1"), job("c-2"), job("c-3")}, 60, BatchTarget{});
  CHECK(store.cancel(c.jobs[0].id, 70) == CancelOutcome::cancelled);
  CHECK(store.cancel(c.jobs[0].id, 71) == CancelOutcome::already_ended);
  CHECK(store.cancel_batch(c.batch_id, 80).jobs == 2);
  CHECK(ended(JobState::cancelled) == 3);
  CHECK(ended(JobState::succeeded) == 1);
  CHECK(ended(JobState::failed) == 3);
  // The status page's minutes hold them at their commit's minute.
  auto minutes = store.endings()->last(unix_ms(), 2);
  std::uint64_t failed = 0, cancelled = 0;
  for (const auto& m : minutes) {
    failed += m.failed;
    cancelled += m.cancelled;
  }
  CHECK(failed == 3);
  CHECK(cancelled == 3);
  // Another process's UPDATE is its own: not counted on this connection.
  {
    sql::Database db(path);
    db.exec("UPDATE jobs SET state = 'failed' WHERE server_id = 'nothing-such'");
  }
  CHECK(ended(JobState::failed) == 3);
}
