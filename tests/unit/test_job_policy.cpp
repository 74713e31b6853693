#include "core/backoff.hpp"
#include "scheduling/job_policy.hpp"
#include "scheduling/rate_limiter.hpp"

#include <doctest/doctest.h>

using namespace kpsd;
using namespace std::chrono_literals;

TEST_CASE("backoff: exponential ceiling - capped - full jitter - never sooner than Retry-After") {
  Backoff b(1000ms, 30000ms);
  CHECK(b.ceiling(1) == 1000ms);
  CHECK(b.ceiling(2) == 2000ms);
  CHECK(b.ceiling(5) == 16000ms);
  CHECK(b.ceiling(6) == 30000ms);
  CHECK(b.ceiling(1000) == 30000ms);  // no overflow
  // The jittered delay covers [0, ceiling]: every draw lands inside, the ends are reached.
  for (int attempt = 1; attempt <= 8; ++attempt) {
    for (double u = 0.0; u < 1.0; u += 0.01) {
      auto d = b.delay(attempt, u);
      CHECK(d >= 0ms);
      CHECK(d <= b.ceiling(attempt));
    }
  }
  CHECK(b.delay(3, 0.0) == 0ms);
  CHECK(b.delay(3, 0.5) == 2000ms);
  CHECK(b.delay(3, 0.999999) == 3999ms);
  CHECK(b.delay(20, 0.5) == 15000ms);             // half of the cap
  CHECK(b.delay(3, 0.25, 9000ms) == 9000ms);      // Retry-After longer than the draw wins
  CHECK(b.delay(3, 0.75, 1ms) == 3000ms);         // shorter: the draw stands
  CHECK(b.delay(20, 0.9, 600000ms) == 600000ms);  // Retry-After beyond the cap is still honoured
}

namespace {
RetrySettings settings() {
  RetrySettings s;
  s.max_attempts = 3;
  s.backoff = Backoff(100ms, 1000ms);
  s.poll_initial_delay = 50ms;
  s.poll_interval = 20ms;
  s.poll_timeout = 1000ms;
  s.throttle_backoff = 5000ms;
  return s;
}
AttemptOutcome outcome(Verdict v) {
  AttemptOutcome o;
  o.verdict = v;
  o.error_msg = "why";
  return o;
}
PollOutcome answered(std::string status) {
  PollOutcome p;
  p.kind = PollOutcome::Kind::answered;
  p.task_status = std::move(status);
  return p;
}
}  // namespace

TEST_CASE("after a call: delivered - retrying with backoff - failed when attempts run out") {
  auto s = settings();
  auto d = decide_after_call(outcome(Verdict::delivered), 0, s, 1000, 0.5);
  CHECK(d.next == JobState::delivered);
  CHECK(d.next_attempt_at == 1050);
  s.poll_tasks = false;
  CHECK(decide_after_call(outcome(Verdict::delivered), 0, s, 1000, 0.5).next ==
        JobState::succeeded);
  s = settings();

  d = decide_after_call(outcome(Verdict::retryable), 0, s, 1000, 0.5);
  CHECK(d.next == JobState::retrying);
  CHECK(d.counts_attempt);
  CHECK(d.next_attempt_at == 1050);  // attempt 1: uniform over [0, 100] → 50
  d = decide_after_call(outcome(Verdict::retryable), 1, s, 1000, 0.5);
  CHECK(d.next_attempt_at == 1100);  // attempt 2: [0, 200] → 100
  d = decide_after_call(outcome(Verdict::retryable), 2, s, 1000, 0.5);
  CHECK(d.next == JobState::failed);
  CHECK(d.error_msg == "gave up after 3 attempts: why");

  d = decide_after_call(outcome(Verdict::permanent), 0, s, 1000, 0.5);
  CHECK(d.next == JobState::failed);
  CHECK(d.error_msg.empty());  // the outcome's own code and message stand
}

TEST_CASE("after a call: throttling waits for Retry-After only and does not use up attempts") {
  auto s = settings();
  auto throttled = outcome(Verdict::throttled);
  throttled.retry_after = 1000ms;
  auto d = decide_after_call(throttled, 2, s, 1000, 0.5);
  CHECK(d.next == JobState::retrying);  // even on the last attempt
  CHECK_FALSE(d.counts_attempt);
  CHECK(d.next_attempt_at == 2000);
  // Without Retry-After it is due at once: the shared rate controller paces it.
  throttled.retry_after.reset();
  CHECK(decide_after_call(throttled, 0, s, 1000, 0.99).next_attempt_at == 1000);
}

TEST_CASE("after a call: 401 retries at once for free the first time then counts") {
  auto s = settings();
  auto d = decide_after_call(outcome(Verdict::reauthenticate), 2, s, 1000, 0.5, false);
  CHECK(d.next == JobState::retrying);
  CHECK_FALSE(d.counts_attempt);
  CHECK(d.next_attempt_at == 1000);
  d = decide_after_call(outcome(Verdict::reauthenticate), 0, s, 1000, 0.5, true);
  CHECK(d.next == JobState::retrying);
  CHECK(d.counts_attempt);
  CHECK(d.next_attempt_at == 1050);
  d = decide_after_call(outcome(Verdict::reauthenticate), 2, s, 1000, 0.5, true);
  CHECK(d.next == JobState::failed);
}

TEST_CASE("a 401 after a refresh blocks for the operator: the job's second or the gate's probe") {
  auto s = settings();
  CallFacts first{.attempts_used = 2};
  AttemptOutcome o = outcome(Verdict::reauthenticate);
  o.http_status = 401;
  DeliveryDecision dd = decide_delivery(o, first, s, 1000, 0.5);
  CHECK(o.verdict == Verdict::reauthenticate);  // the first: refresh and send again, for free
  CHECK(dd.counted_as == "reauthenticate");
  CHECK(dd.decision.next == JobState::retrying);
  CHECK_FALSE(dd.decision.counts_attempt);
  CHECK(dd.counts_retry);
  for (CallFacts again : {CallFacts{.attempts_used = 2, .previous_was_401 = true},
                          CallFacts{.attempts_used = 2, .probe_blocked_gate = true}}) {
    o = outcome(Verdict::reauthenticate);
    o.http_status = 401;
    dd = decide_delivery(o, again, s, 1000, 0.5);
    CHECK(o.verdict == Verdict::blocked);
    CHECK(o.error_msg == "credentials refused: HTTP 401 again after a refresh");
    CHECK(dd.counted_as == "blocked");
    CHECK(dd.decision.next == JobState::retrying);  // waits, whatever its attempts
    CHECK_FALSE(dd.decision.counts_attempt);
    CHECK_FALSE(dd.releases_claim);  // it reached KPS: its attempt row stays
    CHECK_FALSE(dd.counts_retry);
  }
}

TEST_CASE("a call that reached nothing releases its claim - one cut short by a stop is cancelled") {
  auto s = settings();
  AttemptOutcome tls = outcome(Verdict::blocked);  // TLS failed: no answer
  DeliveryDecision dd = decide_delivery(tls, CallFacts{.attempts_used = 1}, s, 1000, 0.5);
  CHECK(dd.releases_claim);
  CHECK(dd.counted_as == "blocked");
  CHECK_FALSE(dd.decision.counts_attempt);
  AttemptOutcome lost = outcome(Verdict::unknown);
  dd = decide_delivery(lost, CallFacts{.attempts_used = 1, .cut_short = true}, s, 1000, 0.5);
  CHECK(dd.counted_as == "cancelled");
  CHECK(dd.decision.next == JobState::queued);
  CHECK_FALSE(dd.decision.counts_attempt);
  CHECK_FALSE(dd.releases_claim);
  CHECK_FALSE(dd.counts_retry);
  AttemptOutcome failed = outcome(Verdict::retryable);
  dd = decide_delivery(failed, CallFacts{.attempts_used = 0}, s, 1000, 0.5);
  CHECK(dd.counted_as == "retryable");
  CHECK(dd.counts_retry);
  CHECK(dd.decision.counts_attempt);
}

TEST_CASE("a poll cut short by a stop is asked again after the restart, nothing counted") {
  auto s = settings();
  PollOutcome none;
  none.kind = PollOutcome::Kind::no_answer;
  PollFacts f{.attempts_used = 1, .delivered_at = 0, .poll_refusals = 2, .task_failures = 1};
  f.cut_short = true;
  PollDecision d = decide_poll(none, f, s, 5000, 0.5);  // past poll_timeout (1 s): not failed
  CHECK(d.next == JobState::delivered);
  CHECK(d.next_attempt_at == 5000);
  CHECK(d.poll_refusals == 2);
  CHECK(d.task_failures == 1);
  f.cut_short = false;
  CHECK(decide_poll(none, f, s, 5000, 0.5).next == JobState::failed);  // the timeout holds
  d = decide_poll_again(f, s, 5000);
  CHECK(d.next == JobState::delivered);
  CHECK(d.next_attempt_at == 5020);
  CHECK(d.poll_refusals == 2);
}

TEST_CASE("a call cancelled by a stop goes back to the queue without using an attempt") {
  auto d = decide_after_cancelled_call(777);
  CHECK(d.next == JobState::queued);
  CHECK(d.next_attempt_at == 777);
  CHECK_FALSE(d.counts_attempt);
}

TEST_CASE("after a poll: success - failure retries the delivery - pending until the timeout") {
  auto s = settings();
  CHECK(decide_after_poll(answered("SUCCESS_UNBIND"), 1, 0, s, 100, 0.5).next ==
        JobState::succeeded);

  auto d = decide_after_poll(answered("RUNNING_UNBIND"), 1, 0, s, 100, 0.5);
  CHECK(d.next == JobState::delivered);
  CHECK(d.next_attempt_at == 120);
  d = decide_after_poll(answered("READY_UNBIND"), 1, 0, s, 1000, 0.5);
  CHECK(d.next == JobState::failed);
  CHECK(d.error_msg->starts_with("task still pending"));

  PollOutcome no_answer;
  no_answer.error_msg = "timed out";
  CHECK(decide_after_poll(no_answer, 1, 0, s, 100, 0.5).next == JobState::delivered);
  CHECK(decide_after_poll(no_answer, 1, 0, s, 1000, 0.5).next == JobState::failed);

  auto failed = answered("FAILED_UNBIND");
  failed.task_error_code = "KPS.0003";
  failed.task_error_msg = "ssh refused";
  failed.task_id = "t-1";
  d = decide_after_poll(failed, 1, 0, s, 100, 0.5);
  CHECK(d.next == JobState::retrying);
  CHECK(d.error_code == "KPS.0003");
  CHECK(d.error_msg == "task t-1 ended FAILED_UNBIND: ssh refused");
  CHECK(d.next_attempt_at == 150);
  CHECK(d.task_failures == 1);
  d = decide_after_poll(failed, 3, 0, s, 100, 0.5);
  CHECK(d.next == JobState::failed);
  CHECK(d.error_msg == "gave up after 3 attempts: task t-1 ended FAILED_UNBIND: ssh refused");

  // A refused poll never re-sends the disassociate: it asks again, then stops following.
  PollOutcome rejected;
  rejected.kind = PollOutcome::Kind::rejected;
  rejected.task_id = "t-9";
  rejected.error_code = "KPS.0001";
  rejected.error_msg = "HTTP 403: no permission";
  d = decide_after_poll(rejected, 1, 0, s, 100, 0.5, 0);
  CHECK(d.next == JobState::delivered);
  CHECK(d.poll_refusals == 1);
  CHECK(d.next_attempt_at == 100 + s.poll_interval.count());
  d = decide_after_poll(rejected, 1, 0, s, 100, 0.5, s.max_poll_refusals - 1);
  CHECK(d.next == JobState::failed);
  CHECK(d.error_code == "KPS.0001");
  CHECK(d.error_msg->starts_with("cannot follow task t-9: HTTP 403: no permission"));
  // An answer in between starts the count again; no answer keeps it.
  PollOutcome pending;
  pending.kind = PollOutcome::Kind::answered;
  pending.task_status = "RUNNING_UNBIND";
  CHECK(decide_after_poll(pending, 1, 0, s, 100, 0.5, 2).poll_refusals == 0);
  PollOutcome silent;
  CHECK(decide_after_poll(silent, 1, 0, s, 100, 0.5, 2).poll_refusals == 2);
}

TEST_CASE("Retry-After is followed up to retry_after_max and no further") {
  RetrySettings s;
  s.retry_after_max = std::chrono::milliseconds(3600000);
  AttemptOutcome throttled;
  throttled.verdict = Verdict::throttled;
  throttled.retry_after = std::chrono::milliseconds(86400000);
  auto d = decide_after_call(throttled, 0, s, 1000, 0.5);
  CHECK(d.next_attempt_at == 1000 + 3600000);
  std::optional<std::chrono::milliseconds> asked = std::chrono::milliseconds(86400000);
  CHECK(retry_after_capped(asked, s));
  CHECK(asked == std::chrono::milliseconds(3600000));
  std::optional<std::chrono::milliseconds> fine = std::chrono::milliseconds(2000);
  CHECK_FALSE(retry_after_capped(fine, s));
  CHECK(fine == std::chrono::milliseconds(2000));
}

TEST_CASE(
    "an unknown outcome is retried like a failure and its last reason says the server may have "
    "acted") {
  RetrySettings s;
  s.max_attempts = 2;
  AttemptOutcome o;
  o.verdict = Verdict::unknown;
  o.error_msg = "answer unreadable after send: read: end of stream";
  Decision first = decide_after_call(o, 0, s, 1000, 0.5);
  CHECK(first.next == JobState::retrying);
  CHECK(first.counts_attempt);
  Decision last = decide_after_call(o, 1, s, 1000, 0.5);
  CHECK(last.next == JobState::failed);
  CHECK(last.error_msg.find("outcome unknown: the server may have carried out the unbind") !=
        std::string::npos);
}

TEST_CASE(
    "a task that ends FAILED has its own budget: task_failure_retries then the task's reason") {
  auto s = settings();
  auto failed = answered("FAILED_UNBIND");
  failed.task_id = "t-7";
  failed.task_error_code = "KPS.0004";
  failed.task_error_msg = "authorized_keys modified since binding";
  CHECK(s.task_failure_retries == 1);  // the default: one new disassociate
  auto d = decide_after_poll(failed, 1, 0, s, 100, 0.5, 0, 0);
  CHECK(d.next == JobState::retrying);
  CHECK(d.task_failures == 1);
  d = decide_after_poll(failed, 2, 0, s, 100, 0.5, 0, 1);  // its second failed task
  CHECK(d.next == JobState::failed);
  CHECK(d.task_failures == 2);
  CHECK(d.error_code == "KPS.0004");
  CHECK(d.error_msg == "task t-7 ended FAILED_UNBIND: authorized_keys modified since binding");

  s.task_failure_retries = 0;  // FAILED_* is final, as the vendor's Terraform resource has it
  d = decide_after_poll(failed, 1, 0, s, 100, 0.5, 0, 0);
  CHECK(d.next == JobState::failed);
  s.task_failure_retries = 3;
  d = decide_after_poll(failed, 1, 0, s, 100, 0.5, 0, 2);
  CHECK(d.next == JobState::retrying);
  CHECK(d.task_failures == 3);
}
