// The batch controls' room of the job store (store/batch_controls.hpp) and the brakes under it
// (store/brake_room.cpp): the failure-budget rule, and the holding of a paused batch's jobs
// (migration 0009): claims skip them, a retry of one stays held, resume gives them back, a
// canary lets its first jobs run, a spent budget stops the batch in the same transaction.
#include "model/batch_brakes.hpp"
#include "result_strings.hpp"
#include "store/job_store.hpp"
#include "store/sqlite.hpp"
#include "temp_dir.hpp"

#include <doctest/doctest.h>

#include <set>

using namespace kpsd;

namespace {

NewJob job(std::string id) { return NewJob{std::move(id), std::nullopt, std::nullopt}; }

std::vector<NewJob> jobs(const std::string& prefix, int n) {
  std::vector<NewJob> out;
  for (int i = 1; i <= n; ++i) out.push_back(job(prefix + std::to_string(i)));
  return out;
}

AttemptFinish ended(const DeliveryWork& w, JobState next, std::int64_t at) {
  AttemptFinish f;
  f.job_id = w.job_id;
  f.attempt_n = w.attempt_n;
  f.finished_at = at;
  f.http_status = next == JobState::failed ? 400 : 202;
  f.next_state = next;
  f.next_attempt_at = at + 10;
  return f;
}

std::set<std::string> servers_of(const std::vector<DeliveryWork>& work) {
  std::set<std::string> out;
  for (const auto& w : work) out.insert(w.server_id);
  return out;
}

}  // namespace

TEST_CASE("failure budget: a count or a percentage - parsed with the value named") {
  Brakes b;
  auto parsed = parse_max_failures("10", b);
  REQUIRE(parsed);
  b = *parsed;
  CHECK(b.max_failures == 10);
  parsed = parse_max_failures("2.5%", b);
  REQUIRE(parsed);
  b = *parsed;
  CHECK(b.max_failure_pct == 2.5);
  CHECK(!b.max_failures);  // one or the other
  CHECK(describe_max_failures(b) == "2.5%");
  parsed = parse_max_failures("0", b);
  REQUIRE(parsed);
  CHECK(parsed->max_failures == 0);
  auto refusal = [](std::string_view text) {
    auto budget = parse_max_failures(text, Brakes{});
    return budget ? std::string() : budget.error().message;
  };
  CHECK(refusal("0%") == "`0%`: a percentage must be over 0% and under 100%");
  CHECK(refusal("100%") == "`100%`: a percentage must be over 0% and under 100%");
  CHECK(refusal("lots") ==
        "`lots`: give a count of failed jobs (10), a percentage (5%), or 0 for none");
  for (const char* bad : {"-1", "%", " 5%", "1e1%", "1.2.3%", ""}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_max_failures(bad, b));
  }
}

TEST_CASE("failure budget: spent at the count - past the percentage once 20 have ended") {
  Brakes count;
  count.max_failures = 10;
  CHECK(!failure_budget_spent(count, 30, 9));
  CHECK(failure_budget_spent(count, 30, 10) == "10 of 30 ended jobs failed (budget: 10)");
  Brakes pct;
  pct.max_failure_pct = 5;
  CHECK(!failure_budget_spent(pct, 19, 19));  // too few ended to judge
  CHECK(!failure_budget_spent(pct, 20, 1));   // 5 % exactly: not past it
  CHECK(failure_budget_spent(pct, 20, 2) == "2 of 20 ended jobs failed (budget: 5%)");
  CHECK(!failure_budget_spent(pct, 1000, 50));
  CHECK(failure_budget_spent(pct, 1000, 51));
  Brakes off;
  off.max_failures = 0;
  CHECK(!failure_budget_spent(off, 100, 100));
  CHECK(!failure_budget_spent(Brakes{}, 100, 100));
}

TEST_CASE("a paused batch's jobs are held: not claimed - a retry stays held - resume") {
  test::TempDir dir;
  JobStore store(dir.file("jobs.db"));
  auto a = store.commands().enqueue(jobs("a-", 3), 100, BatchTarget{});
  auto b = store.commands().enqueue(jobs("b-", 2), 100, BatchTarget{});
  auto first = store.work_queue().claim_for_delivery(1000, 1);  // a-1 on the wire when a is paused
  REQUIRE(first.size() == 1);
  CHECK(first[0].server_id == "a-1");
  auto paused = store.batch_controls().pause_batch(a.batch_id, 1000);
  CHECK(paused.found);
  CHECK(paused.jobs == 2);                         // a-2 and a-3; a-1 is running
  CHECK(store.work_queue().next_due_at() == 100);  // b's jobs; the held ones are due never
  auto work = store.work_queue().claim_for_delivery(2000, 10);
  CHECK(servers_of(work) == std::set<std::string>{"b-1", "b-2"});
  // a-1's call fails and is retried: it comes back held, as its batch is paused.
  std::vector<AttemptFinish> out{ended(first[0], JobState::retrying, 2100)};
  store.work_queue().finish_and_claim(out, ClaimRequest{});
  CHECK(store.work_queue().claim_for_delivery(999999, 10).empty());
  ListQuery of_a;
  of_a.batch_id = a.batch_id;
  auto listed = store.queries().list(of_a);
  REQUIRE(listed.size() == 3);
  for (const Job& j : listed) {
    CHECK(j.held);
    CHECK(j.next_attempt_at < held_offset);  // shown as the due time it had
  }
  auto paused_list = store.queries().paused_batches();
  REQUIRE(paused_list.size() == 1);
  CHECK(paused_list[0].paused == PauseReason::operator_asked);

  auto resumed = store.batch_controls().resume_batch(a.batch_id, 3000);
  CHECK(resumed.jobs == 3);
  CHECK(servers_of(store.work_queue().claim_for_delivery(999999, 10)) ==
        std::set<std::string>{"a-1", "a-2", "a-3"});
  CHECK(store.queries().paused_batches().empty());
  CHECK(!store.batch_controls().pause_batch(424242, 1).found);
}

TEST_CASE("a canary of 3: three jobs claimable - then it says so once - resume gives the rest") {
  test::TempDir dir;
  JobStore store(dir.file("jobs.db"));
  BatchTarget target;
  target.brakes.canary = 3;
  auto batch = store.commands().enqueue(jobs("c-", 5), 100, target);
  // A later chunk of the same enqueue is held too.
  BatchTarget later_chunk;
  later_chunk.id = batch.batch_id;
  store.commands().enqueue(jobs("c-late-", 4), 100, later_chunk);
  auto work = store.work_queue().claim_for_delivery(1000, 20);
  REQUIRE(work.size() == 3);
  std::vector<AttemptFinish> two{ended(work[0], JobState::succeeded, 1100),
                                 ended(work[1], JobState::failed, 1100)};
  auto c = store.work_queue().finish_and_claim(two, ClaimRequest{.now = 1100});
  CHECK(c.stops.empty());  // one canary job is still out
  std::vector<AttemptFinish> last{ended(work[2], JobState::succeeded, 1200)};
  c = store.work_queue().finish_and_claim(last, ClaimRequest{.now = 1200, .limit = 10});
  REQUIRE(c.stops.size() == 1);
  CHECK(c.stops[0].reason == PauseReason::canary);
  CHECK(c.stops[0].line ==
        "canary done: its first 3 jobs ended (2 succeeded, 1 failed); the "
        "others wait for kpsctl resume --batch " +
            std::to_string(batch.batch_id));
  CHECK(c.deliveries.empty());
  auto found = store.queries().find_batch(std::to_string(batch.batch_id));
  REQUIRE(found);
  CHECK(found->ended == 3);
  CHECK(found->failed == 1);
  CHECK(store.batch_controls().resume_batch(batch.batch_id, 1300).jobs == 6);
  CHECK(store.work_queue().claim_for_delivery(999999, 20).size() == 6);
}

TEST_CASE("a batch cancelled while its canary holds it - or paused - is no longer paused") {
  test::TempDir dir;
  JobStore store(dir.file("jobs.db"));
  auto held = store.commands().enqueue(jobs("ch-", 3), 100, BatchTarget{});
  REQUIRE(store.batch_controls().pause_batch(held.batch_id, 100).jobs == 3);  // by the operator
  BatchTarget with_canary;
  with_canary.brakes.canary = 2;
  auto canary = store.commands().enqueue(jobs("cc-", 5), 100, with_canary);
  REQUIRE(store.queries().paused_batches().size() == 2);
  CHECK(store.batch_controls().cancel_batch(canary.batch_id, 200).jobs == 5);
  CHECK(store.batch_controls().cancel_batch(held.batch_id, 200).jobs == 3);
  // Nothing is left to hold: neither counts as paused (kpsctl stats, kpsd_batches_paused).
  CHECK(store.queries().paused_batches().empty());
  CHECK_FALSE(store.queries().find_batch(std::to_string(canary.batch_id))->paused);
  CHECK_FALSE(store.queries().find_batch(std::to_string(held.batch_id))->paused);
  // A retry runs them: the cancel was the operator's last word on the pause.
  CHECK(store.batch_controls().retry_batch(held.batch_id, JobState::cancelled,
                                           300)[RetryOutcome::requeued] == 3);
  CHECK(servers_of(store.work_queue().claim_for_delivery(999999, 20)) ==
        std::set<std::string>{"ch-1", "ch-2", "ch-3"});
}

TEST_CASE("a spent failure budget stops its batch in the transaction that spent it") {
  test::TempDir dir;
  JobStore store(dir.file("jobs.db"));
  BatchTarget target;
  target.brakes.max_failures = 2;
  auto bad = store.commands().enqueue(jobs("f-", 10), 100, target);
  auto other = store.commands().enqueue(jobs("o-", 3), 100, BatchTarget{});
  auto work = store.work_queue().claim_for_delivery(1000, 3);  // f-1, f-2, f-3
  REQUIRE(work.size() == 3);
  std::vector<AttemptFinish> one{ended(work[0], JobState::failed, 1100)};
  CHECK(store.work_queue().finish_and_claim(one, ClaimRequest{.now = 1100}).stops.empty());
  std::vector<AttemptFinish> two{ended(work[1], JobState::failed, 1200)};
  auto c = store.work_queue().finish_and_claim(two, ClaimRequest{.now = 1200, .limit = 20});
  REQUIRE(c.stops.size() == 1);
  CHECK(c.stops[0].reason == PauseReason::failures);
  CHECK(c.stops[0].line == "2 of 2 ended jobs failed (budget: 2)");
  // The same transaction claimed only the other batch's jobs.
  CHECK(servers_of(c.deliveries) == std::set<std::string>{"o-1", "o-2", "o-3"});
  CHECK(store.work_queue().claim_for_delivery(999999, 20).empty());
  // The call in flight (f-3) ends too: counted, no second stop.
  std::vector<AttemptFinish> three{ended(work[2], JobState::failed, 1300)};
  CHECK(store.work_queue().finish_and_claim(three, ClaimRequest{.now = 1300}).stops.empty());
  auto found = store.queries().find_batch(std::to_string(bad.batch_id));
  REQUIRE(found);
  CHECK(found->paused == PauseReason::failures);
  CHECK(found->failed == 3);
  CHECK(found->paused_detail == "2 of 2 ended jobs failed (budget: 2)");
  // The operator's pause over it changes nothing: the reason and detail still say why.
  auto again = store.batch_controls().pause_batch(bad.batch_id, 1400);
  CHECK_FALSE(again.changed);
  found = store.queries().find_batch(std::to_string(bad.batch_id));
  CHECK(found->paused == PauseReason::failures);
  CHECK(found->paused_detail == "2 of 2 ended jobs failed (budget: 2)");
  (void)other;
}

TEST_CASE("cancel_batch and retry_batch act on the batch's jobs only - counts follow") {
  test::TempDir dir;
  JobStore store(dir.file("jobs.db"));
  auto a = store.commands().enqueue(jobs("x-", 4), 100, BatchTarget{});
  auto b = store.commands().enqueue(jobs("y-", 2), 100, BatchTarget{});
  // A job of batch b named again by a later batch joins it: cancel --batch of the later batch
  // reaches it too.
  auto joined =
      store.commands().enqueue(std::vector<NewJob>{job("y-1"), job("z-1")}, 100, BatchTarget{});
  auto c = store.batch_controls().cancel_batch(a.batch_id, 200);
  CHECK(c.jobs == 4);
  CHECK(store.queries().count_batch(b.batch_id)[JobState::queued] == 2);
  CHECK(store.batch_controls().cancel_batch(joined.batch_id, 200).jobs ==
        2);  // y-1 (joined) and z-1
  CHECK(store.queries().count_batch(b.batch_id)[JobState::queued] == 1);
  auto found = store.queries().find_batch(std::to_string(a.batch_id));
  CHECK(found->ended == 4);
  auto r = store.batch_controls().retry_batch(a.batch_id, JobState::cancelled, 300);
  CHECK(r[RetryOutcome::requeued] == 4);
  CHECK(store.queries().find_batch(std::to_string(a.batch_id))->ended == 0);
  // Prune: y-1 and z-1 (cancelled) go; batch b keeps its row while y-2 remains, the later
  // batch, left without jobs, goes.
  CHECK(store.pruning().prune_finished(1000, 100) == 2);
  CHECK(store.queries().find_batch(std::to_string(b.batch_id)));
  CHECK(!store.queries().find_batch(std::to_string(joined.batch_id)));
}

TEST_CASE("failures outside an outcome commit spend the budget too: a key gone - a restart") {
  test::TempDir dir;
  std::string path = dir.file("jobs.db");
  JobStore store(path);
  // A key gone: the claim fails the job instead of sending it in reset form.
  BatchTarget keyed;
  keyed.brakes.max_failures = 1;
  std::vector<NewJob> with_key{NewJob{"k-1", std::nullopt, JobAuth{"keypair", Secret("k")}},
                               NewJob{"k-2", std::nullopt, JobAuth{"keypair", Secret("k")}}};
  auto k = store.commands().enqueue(with_key, 10, keyed);
  {
    sql::Database db(path);
    db.exec("DELETE FROM job_secrets WHERE job_id = (SELECT min(id) FROM jobs)");
  }
  std::vector<BatchStop> stops;
  auto claimed = store.work_queue().claim_for_delivery(20, 1, &stops);
  CHECK(claimed.empty());  // k-1 failed; k-2 is held by the stop in the same transaction
  REQUIRE(stops.size() == 1);
  CHECK(stops[0].batch_id == k.batch_id);
  CHECK(stops[0].line == "1 of 1 ended jobs failed (budget: 1)");
  CHECK(describe(stops[0]) == "batch " + std::to_string(k.batch_id) +
                                  " paused itself: 1 of 1 ended jobs failed (budget: 1); its "
                                  "queued jobs wait for kpsctl resume --batch " +
                                  std::to_string(k.batch_id));
  CHECK(store.work_queue().claim_for_delivery(30, 10).empty());

  // A restart: a job whose last attempt was in flight and used the last of max_attempts fails
  // in the recovery, and its batch's budget counts it.
  BatchTarget budget;
  budget.brakes.max_failures = 1;
  auto r = store.commands().enqueue(jobs("r-", 3), 40, budget);
  auto work = store.work_queue().claim_for_delivery(50, 1);
  REQUIRE(work.size() == 1);  // r-1, now running with attempt 1 of 1
  std::vector<BatchStop> at_restart;
  CHECK(store.work_queue().recover_after_restart(60, 1, &at_restart) == 1);
  REQUIRE(at_restart.size() == 1);
  CHECK(at_restart[0].batch_id == r.batch_id);
  CHECK(store.queries().find(work[0].job_id)->state == JobState::failed);
  CHECK(store.work_queue().claim_for_delivery(70, 10).empty());  // r-2 and r-3 are held
}
