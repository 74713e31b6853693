#include <doctest/doctest.h>

#include "backoff.hpp"
#include "job_policy.hpp"
#include "rate_limiter.hpp"

using namespace kpsd;
using namespace std::chrono_literals;

TEST_CASE("backoff: exponential ceiling capped full jitter never sooner than Retry-After") {
  Backoff b(1000ms, 30000ms);
  CHECK(b.ceiling(1) == 1000ms);
  CHECK(b.ceiling(2) == 2000ms);
  CHECK(b.ceiling(5) == 16000ms);
  CHECK(b.ceiling(6) == 30000ms);
  CHECK(b.ceiling(1000) == 30000ms);  // no overflow
  CHECK(b.delay(3, 0.0) == 0ms);
  CHECK(b.delay(3, 0.5) == 2000ms);
  CHECK(b.delay(3, 0.999999) <= 4000ms);
  CHECK(b.delay(3, 0.25, 9000ms) == 9000ms);
  CHECK(b.delay(3, 0.75, 1ms) == 3000ms);
}

TEST_CASE("rate limiter: burst of one second then refill at the rate") {
  auto t0 = RateLimiter::Clock::time_point{} + 100s;
  RateLimiter r(4, t0);
  for (int i = 0; i < 4; ++i) CHECK(r.try_acquire(t0));
  CHECK_FALSE(r.try_acquire(t0));
  CHECK(r.time_until_available(t0) == 250ms);
  CHECK_FALSE(r.try_acquire(t0 + 249ms));
  CHECK(r.try_acquire(t0 + 250ms));
  r.give_back(1);
  CHECK(r.try_acquire(t0 + 250ms));
  RateLimiter unlimited(0, t0);
  for (int i = 0; i < 1000; ++i) CHECK(unlimited.try_acquire(t0));
  CHECK(unlimited.time_until_available(t0) == RateLimiter::Clock::duration::zero());
}

namespace {
RetrySettings settings() {
  RetrySettings s;
  s.max_attempts = 3;
  s.backoff = Backoff(100ms, 1000ms);
  s.poll_initial_delay = 50ms;
  s.poll_interval = 20ms;
  s.poll_timeout = 1000ms;
  return s;
}
AttemptOutcome outcome(Verdict v) {
  AttemptOutcome o;
  o.verdict = v;
  o.error_msg = "why";
  return o;
}
}  // namespace

TEST_CASE("after a call: delivered retrying with backoff failed when attempts run out") {
  auto s = settings();
  auto d = decide_after_call(outcome(Verdict::delivered), 0, s, 1000, 0.5);
  CHECK(d.next == JobState::delivered);
  CHECK(d.next_attempt_at == 1050);
  s.poll_tasks = false;
  CHECK(decide_after_call(outcome(Verdict::delivered), 0, s, 1000, 0.5).next == JobState::succeeded);
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

  auto throttled = outcome(Verdict::throttled);
  throttled.retry_after = 1000ms;
  d = decide_after_call(throttled, 2, s, 1000, 0.5);
  CHECK(d.next == JobState::retrying);  // throttling does not use up attempts
  CHECK_FALSE(d.counts_attempt);
  CHECK(d.next_attempt_at == 2000);
  throttled.retry_after.reset();
  d = decide_after_call(throttled, 0, s, 1000, 0.0);
  CHECK(d.next_attempt_at >= 1000 + 10000);  // tens of seconds without Retry-After
}

TEST_CASE("after a poll: success failure retries the delivery pending until the timeout") {
  auto s = settings();
  PollOutcome ok{PollOutcome::Kind::answered, "SUCCESS_UNBIND", "", ""};
  CHECK(decide_after_poll(ok, 1, 0, s, 100, 0.5).next == JobState::succeeded);

  PollOutcome pending{PollOutcome::Kind::answered, "RUNNING_UNBIND", "", ""};
  auto d = decide_after_poll(pending, 1, 0, s, 100, 0.5);
  CHECK(d.next == JobState::delivered);
  CHECK(d.next_attempt_at == 120);
  d = decide_after_poll(pending, 1, 0, s, 1000, 0.5);
  CHECK(d.next == JobState::failed);
  CHECK(d.error_msg->starts_with("task still pending"));

  PollOutcome no_answer{PollOutcome::Kind::no_answer, "", "", "timed out"};
  CHECK(decide_after_poll(no_answer, 1, 0, s, 100, 0.5).next == JobState::delivered);

  PollOutcome failed{PollOutcome::Kind::answered, "FAILED_UNBIND", "", ""};
  d = decide_after_poll(failed, 1, 0, s, 100, 0.5);
  CHECK(d.next == JobState::retrying);
  CHECK(d.error_msg == "task ended FAILED_UNBIND");
  d = decide_after_poll(failed, 3, 0, s, 100, 0.5);
  CHECK(d.next == JobState::failed);
}
