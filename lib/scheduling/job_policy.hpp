#pragma once
// Where a job goes after a call or a poll: the state machine of docs/operator-guide.md ("What
// kpsd does with a job") as plain functions of the outcome, the job's history, the settings and
// the time (all passed in; no I/O, no clock).
#include "core/backoff.hpp"
#include "kps/classify.hpp"
#include "model/job.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kpsd {

struct RetrySettings {
  unsigned max_attempts = 8;
  Backoff backoff{std::chrono::milliseconds(1000), std::chrono::milliseconds(300000)};
  bool poll_tasks = true;
  std::chrono::milliseconds poll_initial_delay{10000};
  std::chrono::milliseconds poll_interval{20000};
  std::chrono::milliseconds poll_timeout{1800000};
  std::chrono::milliseconds throttle_backoff{15000};
  // A server's Retry-After is followed up to this long (queue.retry_after_max_ms).
  std::chrono::milliseconds retry_after_max{3600000};
  // Task polls refused (4xx other than 401/429) in a row before the job fails "cannot follow
  // task". A refused poll never leads to another disassociate.
  std::int64_t max_poll_refusals = 3;
  // New disassociates after a task ends FAILED_* (queue.task_failure_retries), apart from
  // delivery attempts: the vendor's reasons for a failed unbind rarely clear by retrying, and
  // its Terraform resource treats FAILED_UNBIND as final.
  std::int64_t task_failure_retries = 1;
};

struct Decision {
  JobState next = JobState::failed;
  std::int64_t next_attempt_at = 0;  // ms; for delivered: when to poll
  bool counts_attempt = true;
  std::string error_msg;  // replaces the outcome's message when set (e.g. "attempts exhausted")
};

// After a disassociate call. `attempts_used` is the count before this call; `uniform01` is the
// jitter draw; `previous_was_401` says the job's last attempt was already rejected with 401
// (so credentials were refreshed once and it is no use doing it again for free).
Decision decide_after_call(const AttemptOutcome& outcome, std::int64_t attempts_used,
                           const RetrySettings& settings, std::int64_t now_ms, double uniform01,
                           bool previous_was_401 = false);

// A call cancelled because kpsd is stopping: its outcome is unknown, so the job goes back to
// the queue without using up an attempt (delivery is at-least-once).
Decision decide_after_cancelled_call(std::int64_t now_ms);

// What the scheduler knows of a disassociate call besides its answer.
struct CallFacts {
  std::int64_t attempts_used = 0;  // jobs.attempts before this call
  bool previous_was_401 = false;   // the job's last attempt was answered 401
  // The call was the call gate's probe and the gate, told of this answer, now blocks: a 401
  // after the credentials were refreshed.
  bool probe_blocked_gate = false;
  bool cut_short = false;  // kpsd aborted (a stop's grace ran out) and the call got no answer
};

struct DeliveryDecision {
  Decision decision;
  std::string_view counted_as;  // kpsd_calls_total's label: the verdict, or "cancelled"
  // Nothing reached KPS (TLS, credentials, descriptors, proxy): the claim is undone (no attempt
  // row, no attempt used) and the job waits in the queue while the gate holds calls.
  bool releases_claim = false;
  bool counts_retry = false;  // kpsd_retries_total: the job goes back for another call
};

// After a disassociate call, all of it: a call cut short by abort() goes back to the queue; a
// 401 after a refresh (the job's second in a row, or the gate's probe) means the credentials
// are wrong, not this job: `outcome` becomes blocked (it waits for the operator, no attempt
// used); otherwise decide_after_call. `outcome` may be rewritten so (its verdict and message).
DeliveryDecision decide_delivery(AttemptOutcome& outcome, const CallFacts& facts,
                                 const RetrySettings& settings, std::int64_t now_ms,
                                 double uniform01);

struct PollDecision {
  JobState next = JobState::delivered;
  std::int64_t next_attempt_at = 0;
  std::optional<std::string> error_code, error_msg;  // set when the job leaves `delivered`
  std::int64_t poll_refusals = 0;                    // refused polls in a row, after this one
  std::int64_t task_failures = 0;                    // the job's FAILED_* tasks, after this one
};

// A task of the job ended FAILED_*, its `task_failures`-th (counting this one): whether a new
// disassociate may follow (queue.task_failure_retries), or the job fails with the task's reason.
inline bool may_resend_after_task_failure(std::int64_t task_failures, const RetrySettings& s) {
  return task_failures <= s.task_failure_retries;
}

// The message of a job that fails because its task failed: "task T ended FAILED_UNBIND: the
// server's reason" (the reason from failed-tasks, when found).
std::string task_failure_message(std::string_view task_id, std::string_view task_status,
                                 std::string_view task_error_msg);

// `poll_refusals`: refused polls in a row before this one. Only a task that KPS reports
// FAILED_* leads to another disassociate; a refused poll is asked again a few times, then the
// job fails "cannot follow task" (kpsctl retry re-checks the task, it never re-sends).
PollDecision decide_after_poll(const PollOutcome& poll, std::int64_t attempts_used,
                               std::int64_t delivered_at, const RetrySettings& settings,
                               std::int64_t now_ms, double uniform01,
                               std::int64_t poll_refusals = 0, std::int64_t task_failures = 0);

// What the scheduler knows of a task poll besides its answer.
struct PollFacts {
  std::int64_t attempts_used = 0;  // jobs.attempts
  std::int64_t delivered_at = 0;   // Unix ms: when the task's call was accepted
  std::int64_t poll_refusals = 0;  // refused polls in a row before this one
  std::int64_t task_failures = 0;  // the job's FAILED_* tasks before this one
  bool cut_short = false;          // kpsd aborted (a stop's grace ran out) during the poll
};

// After a task poll: a poll cut short by abort() that got no answer is asked again after the
// restart (at once, with nothing counted); otherwise decide_after_poll.
PollDecision decide_poll(const PollOutcome& poll, const PollFacts& facts,
                         const RetrySettings& settings, std::int64_t now_ms, double uniform01);
// A poll that ended without an answer or a verdict (an internal error): asked again after
// poll_interval, nothing counted.
PollDecision decide_poll_again(const PollFacts& facts, const RetrySettings& settings,
                               std::int64_t now_ms);

// Retry-After beyond settings.retry_after_max is cut to it (the caller warns).
bool retry_after_capped(std::optional<std::chrono::milliseconds>& retry_after,
                        const RetrySettings& settings);

}  // namespace kpsd
