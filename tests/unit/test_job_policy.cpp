#include "backoff.hpp"
#include "job_policy.hpp"
#include "rate_limiter.hpp"

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
using Clock = RateLimiter::Clock;
const Clock::time_point t0 = Clock::time_point{} + 1000s;
}  // namespace

TEST_CASE("rate limiter: burst of one second then refill at the rate") {
  RateLimiter r(4, t0);
  for (int i = 0; i < 4; ++i) CHECK(r.try_acquire(t0));
  CHECK_FALSE(r.try_acquire(t0));
  CHECK(r.time_until_available(t0) == 250ms);
  CHECK_FALSE(r.try_acquire(t0 + 249ms));
  CHECK(r.try_acquire(t0 + 250ms));
  r.give_back(1);
  CHECK(r.try_acquire(t0 + 250ms));
  CHECK_FALSE(r.try_acquire(t0 + 250ms));
  // A long pause does not bank more than one second of burst.
  int burst = 0;
  while (r.try_acquire(t0 + 100s)) ++burst;
  CHECK(burst == 4);
  RateLimiter unlimited(0, t0);
  for (int i = 0; i < 1000; ++i) CHECK(unlimited.try_acquire(t0));
  CHECK(unlimited.time_until_available(t0) == Clock::duration::zero());
}

TEST_CASE("rate limiter: a 429 halves the rate once per burst and quiet periods bring it back") {
  RateLimiter::Tuning tuning;  // quiet 10 s, steps of 10 % of the ceiling, cooldown 2 s
  RateLimiter r(10, t0, tuning);
  CHECK(r.on_throttled(t0));
  CHECK(r.rate() == 5);
  CHECK_FALSE(r.on_throttled(t0 + 1s));  // the same burst of 429s: no second halving
  CHECK(r.rate() == 5);
  CHECK(r.on_throttled(t0 + 3s));  // a later 429: halve again
  CHECK(r.rate() == 2.5);
  CHECK(r.configured_rate() == 10);
  // The tokens follow the new rate: 2.5/s means one token every 400 ms.
  while (r.try_acquire(t0 + 3s)) {
  }
  auto t1 = t0 + 3s + r.time_until_available(t0 + 3s);
  CHECK(r.try_acquire(t1));
  CHECK(r.time_until_available(t1) == 400ms);
  // 10 s without a 429: +1/s (10 % of 10); again and again until the configured rate.
  r.try_acquire(t0 + 13s);
  CHECK(r.rate() == doctest::Approx(3.5));
  r.try_acquire(t0 + 23s);
  CHECK(r.rate() == doctest::Approx(4.5));
  r.try_acquire(t0 + 83s);
  CHECK(r.rate() == 10);
  r.try_acquire(t0 + 500s);
  CHECK(r.rate() == 10);  // never above the configuration
}

TEST_CASE("rate limiter: never below the floor") {
  RateLimiter r(1, t0);
  for (int i = 0; i < 20; ++i) r.on_throttled(t0 + std::chrono::seconds(3 * i));
  CHECK(r.rate() == doctest::Approx(0.1));
}

TEST_CASE(
    "rate limiter: unlimited becomes limited at half the observed rate on a 429 then unlimited "
    "again") {
  RateLimiter r(0, t0);
  // 40 calls per second for two seconds.
  for (int i = 0; i < 80; ++i) CHECK(r.try_acquire(t0 + std::chrono::milliseconds(25 * i)));
  r.on_throttled(t0 + 2s);
  CHECK(r.rate() == doctest::Approx(20).epsilon(0.1));
  CHECK_FALSE(r.try_acquire(t0 + 2s));  // no burst right after "too many"
  r.try_acquire(t0 + 2s + 10s * 11);
  CHECK(r.rate() == 0);  // recovered: unlimited as configured
}

TEST_CASE("rate limiter: a burst just started counts as calls in the last second") {
  RateLimiter r(0, t0);
  CHECK(r.try_acquire(t0 + 30s));  // idle for a long while, then a burst
  for (int i = 0; i < 74; ++i) CHECK(r.try_acquire(t0 + 30s + 1ms));
  r.on_throttled(t0 + 30s + 40ms);
  CHECK(r.rate() == doctest::Approx(37.5));
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

TEST_CASE("after a call: throttling waits and does not use up attempts") {
  auto s = settings();
  auto throttled = outcome(Verdict::throttled);
  throttled.retry_after = 1000ms;
  auto d = decide_after_call(throttled, 2, s, 1000, 0.5);
  CHECK(d.next == JobState::retrying);  // even on the last attempt
  CHECK_FALSE(d.counts_attempt);
  CHECK(d.next_attempt_at == 2000);
  throttled.retry_after.reset();
  CHECK(decide_after_call(throttled, 0, s, 1000, 0.0).next_attempt_at == 6000);    // 1x
  CHECK(decide_after_call(throttled, 0, s, 1000, 0.99).next_attempt_at == 10950);  // ~2x
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
  d = decide_after_poll(failed, 1, 0, s, 100, 0.5);
  CHECK(d.next == JobState::retrying);
  CHECK(d.error_code == "KPS.0003");
  CHECK(d.error_msg == "task ended FAILED_UNBIND: ssh refused");
  CHECK(d.next_attempt_at == 150);
  d = decide_after_poll(failed, 3, 0, s, 100, 0.5);
  CHECK(d.next == JobState::failed);
  CHECK(d.error_msg == "gave up after 3 attempts: task ended FAILED_UNBIND: ssh refused");

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
