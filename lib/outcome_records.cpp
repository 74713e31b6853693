#include "outcome_records.hpp"

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
  return f;
}

}  // namespace kpsd
