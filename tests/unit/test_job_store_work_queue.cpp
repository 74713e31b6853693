// The scheduler's room of the job store (store/work_queue.hpp): claims, outcomes fenced to
// their claim or lease, the look after an unknown outcome, recovery after a crash, and the
// endings counted where they commit.
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

TEST_CASE("claim → running with an open attempt / finish → delivered / poll → succeeded") {
  JobStore store(":memory:");
  std::vector<NewJob> batch{job("srv-1"), job("srv-2")};
  store.commands().enqueue(batch, 1000);

  CHECK(store.work_queue().claim_for_delivery(999, 10).empty());  // not due before its time
  auto work = store.work_queue().claim_for_delivery(1000, 1);
  REQUIRE(work.size() == 1);
  CHECK(work[0].server_id == "srv-1");
  CHECK(work[0].attempt_n == 1);
  CHECK(work[0].attempts_used == 0);
  CHECK(store.queries().find(work[0].job_id)->state == JobState::running);
  auto attempts = store.queries().attempts_of(work[0].job_id);
  REQUIRE(attempts.size() == 1);
  CHECK_FALSE(attempts[0].finished_at.has_value());

  std::vector<AttemptFinish> f{finish(work[0], JobState::delivered, 1500)};
  store.work_queue().finish_attempts(f);
  Job j = *store.queries().find(work[0].job_id);
  CHECK(j.state == JobState::delivered);
  CHECK(j.attempts == 1);
  CHECK(j.task_id == "task-1");
  CHECK(j.delivery_status == "SUCCESS");
  attempts = store.queries().attempts_of(j.id);
  CHECK(attempts[0].finished_at == 1500);
  CHECK(attempts[0].http_status == 202);
  CHECK(attempts[0].request_id == "req-1");
  CHECK(attempts[0].latency_ms == 12);

  CHECK(store.work_queue().claim_for_poll(1599, 5000, 10).empty());
  auto polls = store.work_queue().claim_for_poll(1600, 5000, 10);
  REQUIRE(polls.size() == 1);
  CHECK(polls[0].task_id == "task-1");
  CHECK(polls[0].delivered_at == 1500);
  CHECK(store.work_queue().claim_for_poll(1600, 5000, 10).empty());  // leased: not polled twice

  CHECK(polls[0].lease_until == 5000);

  PollFinish running = poll_finish(j.id, 1700, "RUNNING_UNBIND", JobState::delivered, 1800);
  running.lease_until = polls[0].lease_until;
  std::vector<PollFinish> p1{running};
  store.work_queue().finish_polls(p1);
  CHECK(store.queries().find(j.id)->task_status == "RUNNING_UNBIND");
  CHECK(store.work_queue().next_due_at() == 1000);  // srv-2 is still queued since 1000

  auto again = store.work_queue().claim_for_poll(1800, 6000, 10);
  REQUIRE(again.size() == 1);
  // A late answer from the first poll (its lease is gone) changes nothing.
  PollFinish late = poll_finish(j.id, 1850, "FAILED_UNBIND", JobState::retrying, 1900);
  late.lease_until = polls[0].lease_until;
  std::vector<PollFinish> stale{late};
  store.work_queue().finish_polls(stale);
  CHECK(store.queries().find(j.id)->state == JobState::delivered);
  CHECK(store.queries().find(j.id)->task_status == "RUNNING_UNBIND");

  PollFinish success = poll_finish(j.id, 1900, "SUCCESS_UNBIND", JobState::succeeded, 0);
  success.lease_until = again[0].lease_until;
  std::vector<PollFinish> p2{success};
  store.work_queue().finish_polls(p2);
  j = *store.queries().find(j.id);
  CHECK(j.state == JobState::succeeded);
  CHECK(j.task_status == "SUCCESS_UNBIND");
}

TEST_CASE("a retrying job becomes due again at next_attempt_at") {
  JobStore store(":memory:");
  std::vector<NewJob> batch{job("srv-r")};
  store.commands().enqueue(batch, 0);
  auto w = store.work_queue().claim_for_delivery(0, 1);
  AttemptFinish f = finish(w[0], JobState::retrying, 10);
  f.next_attempt_at = 500;
  f.error_msg = "HTTP 503";
  std::vector<AttemptFinish> fs{f};
  store.work_queue().finish_attempts(fs);
  CHECK(store.queries().find(w[0].job_id)->state == JobState::retrying);
  CHECK(store.work_queue().claim_for_delivery(499, 10).empty());
  auto again = store.work_queue().claim_for_delivery(500, 10);
  REQUIRE(again.size() == 1);
  CHECK(again[0].attempt_n == 2);
  CHECK(again[0].attempts_used == 1);
}

TEST_CASE("a replace-form job hands its type key and port to the call") {
  JobStore store(":memory:");
  std::vector<NewJob> batch{NewJob{"srv-s", 2222, JobAuth{"password", Secret("hunter2")}}};
  auto r = store.commands().enqueue(batch, 0);
  auto w = store.work_queue().claim_for_delivery(0, 1);
  REQUIRE(w.size() == 1);
  REQUIRE(w[0].auth.has_value());
  CHECK(w[0].auth->type == "password");
  CHECK(w[0].auth->key.reveal() == "hunter2");
  CHECK(w[0].port == 2222);
  Job j = *store.queries().find(r[0].id);
  CHECK(j.auth_type == "password");

  std::vector<AttemptFinish> fs{finish(w[0], JobState::failed, 5)};
  store.work_queue().finish_attempts(fs);
  CHECK(store.queries().find(r[0].id)->state == JobState::failed);
}

TEST_CASE("recovery after a crash: running jobs go back to queued their attempt is closed") {
  JobStore store(":memory:");
  std::vector<NewJob> batch{job("srv-1"), job("srv-2")};
  store.commands().enqueue(batch, 0);
  auto w = store.work_queue().claim_for_delivery(0, 2);
  REQUIRE(w.size() == 2);
  CHECK(store.work_queue().recover_after_restart(50, 8) == 2);
  for (const auto& item : w) {
    Job j = *store.queries().find(item.job_id);
    CHECK(j.state == JobState::queued);
    auto a = store.queries().attempts_of(item.job_id);
    REQUIRE(a.size() == 1);
    CHECK(a[0].finished_at == 50);
    CHECK(a[0].error_msg == "outcome lost: daemon stopped");
  }
  auto again = store.work_queue().claim_for_delivery(50, 2);
  CHECK(again.size() == 2);
  CHECK(again[0].attempt_n == 2);
}

TEST_CASE("attempts are used at claim: a job whose calls keep killing kpsd fails at the limit") {
  JobStore store(":memory:");
  std::vector<NewJob> batch{job("srv-crash")};
  store.commands().enqueue(batch, 0);
  for (int crash = 1; crash <= 3; ++crash) {
    auto w = store.work_queue().claim_for_delivery(crash * 100, 1);
    REQUIRE(w.size() == 1);
    CHECK(w[0].attempts_used == crash - 1);
    CHECK(store.queries().find(w[0].job_id)->attempts == crash);  // counted before the call
    store.work_queue().recover_after_restart(crash * 100 + 50, 3);
  }
  Job j = store.queries().list({}).front();
  CHECK(j.state == JobState::failed);
  CHECK(j.attempts == 3);
  CHECK(j.error_msg ==
        std::string(maybe_done_prefix) + "gave up after 3 attempts: outcome lost: daemon stopped");
  CHECK(store.queries().attempts_of(j.id).size() == 3);
}

TEST_CASE("an outcome that does not count gives back the attempt taken at claim") {
  JobStore store(":memory:");
  std::vector<NewJob> batch{job("srv-429")};
  store.commands().enqueue(batch, 0);
  auto w = store.work_queue().claim_for_delivery(0, 1);
  AttemptFinish f = finish(w[0], JobState::retrying, 10);
  f.counts_attempt = false;
  std::vector<AttemptFinish> fs{f};
  store.work_queue().finish_attempts(fs);
  CHECK(store.queries().find(w[0].job_id)->attempts == 0);
}

TEST_CASE("outcomes are fenced: an old call's outcome does not move the job") {
  JobStore store(":memory:");
  std::vector<NewJob> batch{job("srv-fence")};
  store.commands().enqueue(batch, 0);
  auto first = store.work_queue().claim_for_delivery(0, 1);
  // Cancelled while its call is in flight: a retry must wait for that call to end.
  CHECK(store.commands().cancel(first[0].job_id, 5) == CancelOutcome::cancelled);
  CHECK(store.commands().retry(first[0].job_id, 6) == RetryOutcome::call_in_flight);
  std::vector<AttemptFinish> late{finish(first[0], JobState::delivered, 20)};
  store.work_queue().finish_attempts(late);
  Job j = *store.queries().find(first[0].job_id);
  CHECK(j.state == JobState::cancelled);                          // the late 202 did not revive it
  CHECK(store.queries().attempts_of(j.id)[0].finished_at == 20);  // but its attempt row is closed
  CHECK(store.commands().retry(j.id, 30) == RetryOutcome::requeued);  // now it may go again
  auto second = store.work_queue().claim_for_delivery(30, 1);
  REQUIRE(second.size() == 1);
  CHECK(second[0].attempt_n == 2);
  // A duplicate outcome for attempt 1 arriving now changes nothing.
  std::vector<AttemptFinish> stale{finish(first[0], JobState::failed, 40)};
  store.work_queue().finish_attempts(stale);
  CHECK(store.queries().find(j.id)->state == JobState::running);
}

TEST_CASE("a replace-form job whose key is gone is failed at claim and never handed out") {
  test::TempDir dir;
  std::string path = dir.file("jobs.db");
  JobStore store(path);
  std::vector<NewJob> batch{NewJob{"srv-key", std::nullopt, JobAuth{"keypair", Secret("k")}}};
  auto r = store.commands().enqueue(batch, 10);
  auto w = store.work_queue().claim_for_delivery(10, 1);
  REQUIRE(w.size() == 1);
  std::vector<AttemptFinish> back{finish(w[0], JobState::retrying, 11)};
  back[0].next_attempt_at = 12;
  store.work_queue().finish_attempts(back);
  // The key is gone while the job is due again (as after "task still pending" deleted it and
  // a re-check then saw the task fail).
  external_exec(path, "DELETE FROM job_secrets WHERE job_id = " + std::to_string(r[0].id));
  CHECK(store.work_queue().claim_for_delivery(20, 10).empty());
  Job j = *store.queries().find(r[0].id);
  CHECK(j.state == JobState::failed);
  CHECK(j.error_msg == "key no longer held: enqueue again with the key");
  CHECK(store.queries().attempts_of(j.id).size() == 1);  // no second call
}

TEST_CASE("outcomes and the next claims commit in one transaction - polls first") {
  test::TempDir dir;
  std::string path = dir.file("jobs.db");
  JobStore store(path);
  std::vector<NewJob> batch{job("a"), job("b"), job("c"), job("d")};
  store.commands().enqueue(batch, 1000);
  auto first = store.work_queue().claim_for_delivery(1000, 2);  // a and b
  REQUIRE(first.size() == 2);
  // a is delivered (its poll is due at once), b succeeds; claim 2 more in the same commit.
  auto delivered = finish(first[0], JobState::delivered, 1100);
  delivered.next_attempt_at = 1100;
  std::vector<AttemptFinish> outcomes{delivered, finish(first[1], JobState::succeeded, 1100)};
  Claimed next = store.work_queue().finish_and_claim(outcomes, ClaimRequest{1200, 9000, 2});
  REQUIRE(next.polls.size() == 1);  // a's task poll comes first ...
  CHECK(next.polls[0].job_id == first[0].job_id);
  CHECK(next.polls[0].lease_until == 9000);
  REQUIRE(next.deliveries.size() == 1);  // ... then c
  CHECK(next.deliveries[0].server_id == "c");
  CHECK(store.queries().find(next.deliveries[0].job_id)->state == JobState::running);
  CHECK(store.queries().find(first[1].job_id)->state == JobState::succeeded);
  CHECK(external_int(path, "SELECT count(*) FROM attempts WHERE finished_at IS NULL") == 1);

  // A claim of nothing records the outcomes alone.
  std::vector<AttemptFinish> last{finish(next.deliveries[0], JobState::succeeded, 1300)};
  Claimed none = store.work_queue().finish_and_claim(last, ClaimRequest{});
  CHECK(none.polls.empty());
  CHECK(none.deliveries.empty());
  CHECK(store.queries().find(next.deliveries[0].job_id)->state == JobState::succeeded);
  CHECK(store.queries().find(first[0].job_id)->state == JobState::delivered);
  CHECK(store.queries().count_by_state()[JobState::queued] == 1);  // d was not claimed
}

TEST_CASE("an unknown outcome is kept for the look: recovery - claim - a decision without a call") {
  JobStore store(":memory:");
  store.commands().enqueue(std::vector<NewJob>{job("srv")}, 0);
  auto w = store.work_queue().claim_for_delivery(100, 1);
  REQUIRE(w.size() == 1);
  CHECK_FALSE(w[0].unknown_since);
  CHECK(w[0].claimed_at == 100);
  store.work_queue().recover_after_restart(200, 8);  // its call was in flight at a crash
  auto again = store.work_queue().claim_for_delivery(300, 1);
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
  store.work_queue().finish_attempts(std::span<const AttemptFinish>(&adopt, 1));
  Job j = *store.queries().find(adopt.job_id);
  CHECK(j.state == JobState::delivered);
  CHECK(j.task_id == "t-1");
  CHECK(j.attempts == 1);  // the lost call's attempt only
  auto attempts = store.queries().attempts_of(adopt.job_id);
  REQUIRE(attempts.size() == 1);
  CHECK(attempts[0].look == "outcome unknown; adopted running task t-1");
  auto polls = store.work_queue().claim_for_poll(400, 500, 1);
  REQUIRE(polls.size() == 1);
  CHECK(polls[0].task_id == "t-1");
}

TEST_CASE("maybe done: a job that failed after a call went again past an unknown outcome") {
  JobStore store(":memory:");
  store.commands().enqueue(std::vector<NewJob>{job("m1"), job("plain")}, 0);
  auto w = store.work_queue().claim_for_delivery(0, 2);
  REQUIRE(w.size() == 2);
  std::vector<AttemptFinish> fs;
  for (const auto& item : w) {
    AttemptFinish f = finish(item, JobState::failed, 10);
    f.sent_after_unknown = item.server_id == "m1";
    fs.push_back(f);
  }
  store.work_queue().finish_attempts(fs);
  ListQuery q;
  q.maybe_done = true;
  auto maybe = store.queries().list(q);
  REQUIRE(maybe.size() == 1);
  CHECK(maybe[0].server_id == "m1");
  CHECK(maybe[0].maybe_done);
  CHECK(store.queries().list({}).size() == 2);
  q.server_id = "plain";
  CHECK(store.queries().list(q).empty());
}

TEST_CASE("recovery drops the dead process's poll leases and restarts a look's waits") {
  JobStore store(":memory:");
  store.commands().enqueue(std::vector<NewJob>{job("polled")}, 0);
  auto w = store.work_queue().claim_for_delivery(0, 1);
  REQUIRE(w.size() == 1);
  AttemptFinish f = finish(w[0], JobState::delivered, 10);
  store.work_queue().finish_attempts(std::span<const AttemptFinish>(&f, 1));
  REQUIRE(store.work_queue().claim_for_poll(200, 600000, 1).size() == 1);  // leased for ten minutes
  CHECK(store.work_queue().claim_for_poll(300, 600000, 1).empty());
  store.work_queue().recover_after_restart(400, 8);
  auto again =
      store.work_queue().claim_for_poll(400, 500, 1);  // the lease of the dead process is gone
  REQUIRE(again.size() == 1);
  CHECK(again[0].job_id == w[0].job_id);
}

TEST_CASE("a job that fails with its last call's outcome unknown is maybe done") {
  JobStore store(":memory:");
  store.commands().enqueue(std::vector<NewJob>{job("lost")}, 0);
  auto w = store.work_queue().claim_for_delivery(0, 1);
  REQUIRE(w.size() == 1);
  store.work_queue().recover_after_restart(50, 1);  // its only attempt was in flight: gave up
  Job j = *store.queries().find(w[0].job_id);
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
  store.commands().enqueue(std::vector<NewJob>{job("ok-1")}, 1);
  auto w = store.work_queue().claim_for_delivery(2, 1);
  REQUIRE(w.size() == 1);
  std::vector<AttemptFinish> done{finish(w[0], JobState::succeeded, 3)};
  store.work_queue().finish_and_claim(done, ClaimRequest{});
  CHECK(ended(JobState::succeeded) == 1);
  // A key gone at the claim.
  std::vector<NewJob> keyed{NewJob{"k-1", std::nullopt, JobAuth{"keypair", Secret("k")}}};
  store.commands().enqueue(keyed, 10);
  {
    sql::Database db(path);
    db.exec("DELETE FROM job_secrets");
  }
  CHECK(store.work_queue().claim_for_delivery(20, 5).empty());
  CHECK(ended(JobState::failed) == 1);
  // The recovery after a restart, past max_attempts.
  store.commands().enqueue(std::vector<NewJob>{job("r-1"), job("r-2")}, 30);
  REQUIRE(store.work_queue().claim_for_delivery(40, 2).size() == 2);
  CHECK(store.work_queue().recover_after_restart(50, 1) == 2);
  CHECK(ended(JobState::failed) == 3);
  // Cancels: one, then the rest of a batch; a job already ended is not counted again.
  auto c = store.commands().enqueue(std::vector<NewJob>{job("c-1"), job("c-2"), job("c-3")}, 60,
                                    BatchTarget{});
  CHECK(store.commands().cancel(c.jobs[0].id, 70) == CancelOutcome::cancelled);
  CHECK(store.commands().cancel(c.jobs[0].id, 71) == CancelOutcome::already_ended);
  CHECK(store.batch_controls().cancel_batch(c.batch_id, 80).jobs == 2);
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
