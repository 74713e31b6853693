#include "store/job_retry.hpp"

namespace kpsd {

JobRetry::TargetColumns::TargetColumns(const sql::Statement& s)
    : state(s.column_index("state")),
      key_gone(s.column_index("key_gone")),
      task_pending(s.column_index("task_pending")),
      call_in_flight(s.column_index("call_in_flight")),
      other_unfinished(s.column_index("other_unfinished")) {}

JobRetry::JobRetry(sql::Database& db)
    : target_(db,
              "SELECT state, auth_type IS NOT NULL AND NOT EXISTS "
              "(SELECT 1 FROM job_secrets s WHERE s.job_id = jobs.id) AS key_gone, "
              "task_id IS NOT NULL AND (coalesce(error_msg, '') LIKE 'task still pending%' "
              "OR coalesce(error_msg, '') LIKE 'cannot follow task%') AS task_pending, "
              "EXISTS (SELECT 1 FROM attempts a WHERE a.job_id = jobs.id "
              "AND a.finished_at IS NULL) AS call_in_flight, "
              // The server's unfinished job, if it has one (jobs_one_unfinished).
              "(SELECT o.id FROM jobs o WHERE o.server_id = jobs.server_id AND o.state IN "
              "('queued','running','retrying','delivered') AND o.id != jobs.id) "
              "AS other_unfinished FROM jobs WHERE id = ?1"),
      requeue_(db,
               "UPDATE jobs SET state = 'queued', attempts = 0, next_attempt_at = ?2, "
               "task_failures = 0, look_waits = 0, "
               "error_code = NULL, error_msg = NULL, updated_at = ?2 WHERE id = ?1"),
      recheck_(db,
               "UPDATE jobs SET state = 'delivered', next_attempt_at = ?2, delivered_at = ?2, "
               "poll_refusals = 0, error_code = NULL, error_msg = NULL, updated_at = ?2 "
               "WHERE id = ?1"),
      cols_(target_) {}

RetryOutcome JobRetry::retry_one(std::int64_t id, std::int64_t now, std::int64_t* unfinished_job) {
  target_.bind(1, id);
  if (!target_.step()) {
    target_.reset();
    return RetryOutcome::not_found;
  }
  auto state = parse_job_state(target_.column_text(cols_.state));
  bool key_gone = target_.column_int(cols_.key_gone) != 0;
  bool task_pending = target_.column_int(cols_.task_pending) != 0;
  bool call_in_flight = target_.column_int(cols_.call_in_flight) != 0;
  std::optional<std::int64_t> other = target_.column_optional_int(cols_.other_unfinished);
  target_.reset();
  if (state == JobState::succeeded) return RetryOutcome::succeeded;
  if (state != JobState::failed && state != JobState::cancelled) return RetryOutcome::not_ended;
  if (other) {
    if (unfinished_job) *unfinished_job = *other;
    return RetryOutcome::server_busy;
  }
  if (call_in_flight) return RetryOutcome::call_in_flight;
  if (task_pending) {
    recheck_.bind(1, id).bind(2, now).run();
    return RetryOutcome::rechecking;
  }
  if (key_gone) return RetryOutcome::key_gone;
  requeue_.bind(1, id).bind(2, now).run();
  return RetryOutcome::requeued;
}

}  // namespace kpsd
