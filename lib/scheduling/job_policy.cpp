#include "scheduling/job_policy.hpp"

namespace kpsd {

namespace {

// A throttled (or blocked) call's job is due again at once, or when Retry-After says: the shared
// rate controller, not a per-job wait, decides when calls go out (it slows down, or holds for a
// quota window to turn). Parking each job for tens of seconds left a batch's tail waiting long
// after the gateway would admit it.
std::chrono::milliseconds throttle_delay(std::optional<std::chrono::milliseconds> retry_after) {
  return retry_after.value_or(std::chrono::milliseconds(0));
}

}  // namespace

Decision decide_after_cancelled_call(std::int64_t now) {
  Decision d;
  d.next = JobState::queued;
  d.next_attempt_at = now;
  d.counts_attempt = false;
  d.error_msg = "cancelled: kpsd was stopping; outcome unknown, will be sent again";
  return d;
}

DeliveryDecision decide_delivery(AttemptOutcome& o, const CallFacts& facts, const RetrySettings& s,
                                 std::int64_t now, double u) {
  DeliveryDecision dd;
  if (facts.cut_short) {
    dd.decision = decide_after_cancelled_call(now);
    dd.counted_as = "cancelled";
    return dd;
  }
  if (o.verdict == Verdict::reauthenticate &&
      (facts.previous_was_401 || facts.probe_blocked_gate)) {
    o.verdict = Verdict::blocked;
    o.error_msg = "credentials refused: HTTP 401 again after a refresh";
  }
  dd.counted_as = to_string(o.verdict);
  dd.decision = decide_after_call(o, facts.attempts_used, s, now, u, facts.previous_was_401);
  // A 401 after a refresh did reach KPS: it keeps its attempt row (every call on record).
  dd.releases_claim = o.verdict == Verdict::blocked && !o.http_status;
  dd.counts_retry = dd.decision.next == JobState::retrying && o.verdict != Verdict::blocked;
  return dd;
}

Decision decide_after_call(const AttemptOutcome& o, std::int64_t attempts_used,
                           const RetrySettings& s, std::int64_t now, double u,
                           bool previous_was_401) {
  Decision d;
  auto retry_after = o.retry_after;
  retry_after_capped(retry_after, s);
  switch (o.verdict) {
    case Verdict::delivered:
      d.next = s.poll_tasks ? JobState::delivered : JobState::succeeded;
      d.next_attempt_at = now + s.poll_initial_delay.count();
      return d;
    case Verdict::permanent:
      d.next = JobState::failed;
      return d;
    case Verdict::blocked:  // nothing was sent: wait like a throttled call, for the operator
    case Verdict::throttled:
      d.counts_attempt = false;
      d.next = JobState::retrying;
      d.next_attempt_at = now + throttle_delay(retry_after).count();
      return d;
    case Verdict::reauthenticate:
      if (!previous_was_401) {
        // Credentials were just refreshed: try again at once, without using up an attempt.
        d.counts_attempt = false;
        d.next = JobState::retrying;
        d.next_attempt_at = now;
        return d;
      }
      [[fallthrough]];      // refreshed once already and still refused: an ordinary failure
    case Verdict::unknown:  // the server may have acted; sent again like a retryable failure
    case Verdict::retryable: {
      std::int64_t used = attempts_used + 1;
      if (used >= static_cast<std::int64_t>(s.max_attempts)) {
        d.next = JobState::failed;
        d.error_msg = "gave up after " + std::to_string(used) + " attempts: " + o.error_msg;
        // Not a refusal: the last call reached the server and its answer was lost.
        if (o.verdict == Verdict::unknown)
          d.error_msg += " (outcome unknown: the server may have carried out the unbind)";
        return d;
      }
      d.next = JobState::retrying;
      d.next_attempt_at = now + s.backoff.delay(static_cast<int>(used), u, retry_after).count();
      return d;
    }
  }
  return d;
}

std::string task_failure_message(std::string_view task_id, std::string_view task_status,
                                 std::string_view task_error_msg) {
  std::string why = "task " + std::string(task_id) + " ended " + std::string(task_status);
  if (!task_error_msg.empty()) why += ": " + std::string(task_error_msg);
  return why;
}

bool retry_after_capped(std::optional<std::chrono::milliseconds>& retry_after,
                        const RetrySettings& s) {
  if (!retry_after || *retry_after <= s.retry_after_max) return false;
  retry_after = s.retry_after_max;
  return true;
}

PollDecision decide_after_poll(const PollOutcome& p, std::int64_t attempts_used,
                               std::int64_t delivered_at, const RetrySettings& s, std::int64_t now,
                               double u, std::int64_t poll_refusals, std::int64_t task_failures) {
  PollDecision d;
  d.task_failures = task_failures;
  auto retry_delivery = [&](std::string code, std::string msg) {
    // The task failed, so the delivery it belongs to failed: retry the disassociate if attempts
    // remain (the delivery already counted its attempt).
    d.error_code = std::move(code);
    if (attempts_used >= static_cast<std::int64_t>(s.max_attempts)) {
      d.next = JobState::failed;
      d.error_msg = "gave up after " + std::to_string(attempts_used) + " attempts: " + msg;
    } else {
      d.next = JobState::retrying;
      d.next_attempt_at = now + s.backoff.delay(static_cast<int>(attempts_used), u).count();
      d.error_msg = std::move(msg);
    }
  };

  if (p.kind == PollOutcome::Kind::answered) {
    switch (task_phase(p.task_status)) {
      case TaskPhase::succeeded:
        d.next = JobState::succeeded;  // the store clears earlier attempts' reasons
        return d;
      case TaskPhase::failed: {
        d.task_failures = task_failures + 1;
        std::string why = task_failure_message(p.task_id, p.task_status, p.task_error_msg);
        if (!may_resend_after_task_failure(d.task_failures, s)) {
          d.next = JobState::failed;  // with the task's own code and message
          d.error_code = p.task_error_code;
          d.error_msg = std::move(why);
          return d;
        }
        retry_delivery(p.task_error_code, why);
        return d;
      }
      case TaskPhase::pending:
        break;
    }
  } else if (p.kind == PollOutcome::Kind::rejected) {
    // The task may be fine; only its lookup was refused (a policy without task-read rights,
    // a 404 ...). Unbinding again would be the wrong call: ask again, then give up following.
    d.poll_refusals = poll_refusals + 1;
    if (d.poll_refusals >= s.max_poll_refusals) {
      d.next = JobState::failed;
      d.error_code = p.error_code;
      d.error_msg = "cannot follow task " + p.task_id + ": " + p.error_msg +
                    " (kpsctl retry re-checks the task; it does not unbind again)";
      return d;
    }
    d.next = JobState::delivered;
    d.next_attempt_at = now + s.poll_interval.count();
    return d;
  } else {
    d.poll_refusals = poll_refusals;  // no answer: neither a refusal nor an answer
  }
  if (now - delivered_at >= s.poll_timeout.count()) {
    d.next = JobState::failed;
    d.error_msg = "task still pending after " + std::to_string(s.poll_timeout.count() / 1000) +
                  " s (it may yet finish: kpsctl retry re-checks)";
    return d;
  }
  d.next = JobState::delivered;
  d.next_attempt_at = now + s.poll_interval.count();
  return d;
}

PollDecision decide_poll(const PollOutcome& p, const PollFacts& f, const RetrySettings& s,
                         std::int64_t now, double u) {
  if (f.cut_short && p.kind == PollOutcome::Kind::no_answer) {
    PollDecision d;
    d.next = JobState::delivered;  // ask again after the restart
    d.next_attempt_at = now;
    d.poll_refusals = f.poll_refusals;
    d.task_failures = f.task_failures;
    return d;
  }
  return decide_after_poll(p, f.attempts_used, f.delivered_at, s, now, u, f.poll_refusals,
                           f.task_failures);
}

PollDecision decide_poll_again(const PollFacts& f, const RetrySettings& s, std::int64_t now) {
  PollDecision d;
  d.next = JobState::delivered;
  d.next_attempt_at = now + s.poll_interval.count();
  d.poll_refusals = f.poll_refusals;
  d.task_failures = f.task_failures;
  return d;
}

}  // namespace kpsd
