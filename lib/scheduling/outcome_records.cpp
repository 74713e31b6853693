#include "scheduling/outcome_records.hpp"

namespace kpsd {

AttemptFinish attempt_finish(const DeliveryWork& w, const AttemptOutcome& o, const Decision& d,
                             std::int64_t now, std::chrono::milliseconds latency) {
  AttemptFinish f;
  f.job_id = w.job_id;
  f.attempt_n = w.attempt_n;
  f.finished_at = now;
  f.latency_ms = latency.count();
  f.http_status = o.http_status;
  f.request_id = o.request_id;
  f.task_id = o.task_id;
  f.delivery_status = o.delivery_status;
  f.error_code = o.error_code;
  f.error_msg = d.error_msg.empty() ? o.error_msg : d.error_msg;
  f.counts_attempt = d.counts_attempt;
  f.next_state = d.next;
  f.next_attempt_at = d.next_attempt_at;
  // The look before the next call needs to know when this one started (its task is newer).
  f.look_waits = w.look_waits;
  if (o.verdict == Verdict::unknown) {
    f.unknown_since = w.claimed_at;
    f.look_waits = 0;  // a new unknown outcome: its look may wait again
  }
  f.task_failures = w.task_failures;
  f.sent_after_unknown = w.sent_after_unknown;
  // Failed while an earlier call (or this one) may have done the unbind: jobs.maybe_done.
  if (d.next == JobState::failed && (w.sent_after_unknown || o.verdict == Verdict::unknown))
    f.error_msg.insert(0, maybe_done_prefix);
  return f;
}

AttemptFinish claim_released(const DeliveryWork& w, std::int64_t now) {
  AttemptFinish f;
  f.job_id = w.job_id;
  f.attempt_n = w.attempt_n;
  f.finished_at = now;
  f.release_claim = true;
  f.next_state = JobState::queued;
  f.next_attempt_at = now;
  return f;
}

std::optional<AttemptFinish> look_finish(DeliveryWork& w, const LookDecision& look,
                                         const RetrySettings& s, const LookSettings& ls,
                                         std::int64_t now) {
  AttemptFinish f;
  f.job_id = w.job_id;
  f.attempt_n = w.attempt_n;
  f.finished_at = now;
  f.no_call = true;
  f.look = look.note;
  f.look_waits = w.look_waits;
  f.sent_after_unknown = w.sent_after_unknown;
  switch (look.kind) {
    case LookDecision::Kind::adopt:  // the lost call's task: follow it as if it were delivered
      f.task_failures = w.task_failures;
      f.task_id = look.task.task_id;
      f.next_state = s.poll_tasks ? JobState::delivered : JobState::succeeded;
      f.next_attempt_at = now + s.poll_interval.count();
      return f;
    case LookDecision::Kind::wait:
      f.task_failures = w.task_failures;
      f.look_waits = w.look_waits + 1;
      f.unknown_since = w.unknown_since;  // still unknown: look again
      f.next_state = JobState::retrying;
      f.next_attempt_at = now + ls.wait.count();
      f.error_msg = look.note;
      return f;
    case LookDecision::Kind::settle:  // not a look yet: nothing counted
      f.task_failures = w.task_failures;
      f.unknown_since = w.unknown_since;
      f.next_state = JobState::retrying;
      f.next_attempt_at = look.look_at_ms;
      f.error_msg = look.note;
      return f;
    case LookDecision::Kind::task_failed:
      w.task_failures += 1;
      w.unknown_since.reset();
      if (may_resend_after_task_failure(w.task_failures, s)) return std::nullopt;
      f.task_failures = w.task_failures;
      f.task_id = look.task.task_id;
      f.next_state = JobState::failed;  // with the task's own code and message
      f.error_code = look.task.error_code;
      f.error_msg = task_failure_message(
          look.task.task_id,
          "FAILED_" + (look.task.operate_type.empty() ? "UNBIND" : look.task.operate_type),
          look.task.error_msg);
      if (!look.task.error_code.empty()) f.task_error_code = look.task.error_code;
      if (!look.task.error_msg.empty()) f.task_error_msg = look.task.error_msg;
      if (w.sent_after_unknown) f.error_msg.insert(0, maybe_done_prefix);
      return f;
    case LookDecision::Kind::send_again:
      break;
  }
  w.sent_after_unknown = true;
  w.unknown_since.reset();
  return std::nullopt;
}

PollFinish poll_finish(const PollWork& w, const PollOutcome& p, const PollDecision& d,
                       std::int64_t now) {
  PollFinish f;
  f.job_id = w.job_id;
  f.at = now;
  if (p.kind == PollOutcome::Kind::answered) f.task_status = p.task_status;
  f.next_state = d.next;
  f.next_attempt_at = d.next_attempt_at;
  f.error_code = d.error_code;
  f.error_msg = d.error_msg;
  if (!p.task_error_code.empty()) f.task_error_code = p.task_error_code;
  if (!p.task_error_msg.empty()) f.task_error_msg = p.task_error_msg;
  f.lease_until = w.lease_until;
  f.poll_refusals = d.poll_refusals;
  f.task_failures = d.task_failures;
  if (d.next == JobState::failed && w.sent_after_unknown && f.error_msg)
    f.error_msg->insert(0, maybe_done_prefix);
  return f;
}

PollFinish lease_released(const PollWork& w, std::int64_t now) {
  PollFinish f;
  f.job_id = w.job_id;
  f.at = now;
  f.next_state = JobState::delivered;
  f.next_attempt_at = now;
  f.lease_until = w.lease_until;
  f.poll_refusals = w.poll_refusals;
  f.task_failures = w.task_failures;
  return f;
}

}  // namespace kpsd
