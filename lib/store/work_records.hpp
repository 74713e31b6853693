#pragma once
// The scheduler's work as the store hands it out and takes it back: a claimed call or poll, and
// how each ended. Values only; the work queue (store/work_queue.hpp) claims and records them.
// Times are Unix ms.
#include "model/job.hpp"
#include "model/job_records.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace kpsd {

// A job claimed for a disassociate call (now `running`, its attempt row open).
struct DeliveryWork {
  std::int64_t job_id = 0;
  std::int64_t attempt_n = 0;      // the attempt row's n
  std::int64_t attempts_used = 0;  // jobs.attempts before this call
  bool previous_was_401 = false;   // the job's last attempt was answered 401
  bool key_gone = false;           // replace form without its key: never sent (claim fails it)
  std::string server_id;
  std::optional<std::int64_t> port;
  std::optional<JobAuth> auth;
  std::int64_t claimed_at = 0;  // Unix ms: the attempt row's started_at
  // Unix ms: when the job's newest call with an unknown outcome started; set: look for the
  // server's task before sending (jobs.unknown_since).
  std::optional<std::int64_t> unknown_since;
  // Unix ms: when kpsd learned the newest call's outcome was lost (its attempt's finished_at;
  // the restart, for a call in flight at a crash). The look waits a little after it.
  std::int64_t lost_at = 0;
  std::vector<std::string> known_tasks;  // with unknown_since: the job's earlier task ids
  std::int64_t look_waits = 0;           // looks that found a full running list and waited
  std::int64_t task_failures = 0;        // the job's tasks that ended FAILED_* so far
  bool sent_after_unknown = false;       // a call went again after an unresolved unknown outcome
};

// A delivered job whose task is due for a poll (leased until the poll ends).
struct PollWork {
  std::int64_t job_id = 0;
  std::int64_t attempts_used = 0;
  std::string task_id;
  std::int64_t delivered_at = 0;
  std::int64_t poll_refusals = 0;  // refused polls in a row before this one
  std::int64_t lease_until = 0;    // the lease: the poll's outcome applies only while it holds
  std::string server_id;           // for log lines: operators look for servers, not tasks
  std::int64_t task_failures = 0;  // the job's tasks that ended FAILED_* before this one
  bool sent_after_unknown = false;
};

// How a disassociate call ended, and where the job goes next (decided by job_policy).
struct AttemptFinish {
  std::int64_t job_id = 0;
  std::int64_t attempt_n = 0;
  std::int64_t finished_at = 0;
  std::int64_t latency_ms = 0;
  std::optional<std::int64_t> http_status;
  std::string request_id, task_id, delivery_status, error_code, error_msg;
  bool counts_attempt = true;  // false: the attempt taken at claim is given back
  // Nothing was sent (blocked): the claim is undone: the open attempt row is deleted and the
  // job goes back to `queued` at next_attempt_at, its attempt given back.
  bool release_claim = false;
  JobState next_state = JobState::failed;
  std::int64_t next_attempt_at = 0;
  // The look before the call (after an unknown outcome) decided without sending: the claimed
  // attempt row is deleted and its attempt given back, but the job moves as decided (adopted
  // task: `delivered` with task_id; `failed`; or `retrying` to look again).
  bool no_call = false;
  std::string look;  // the look's decision, written on the job's previous (unknown) attempt
  std::optional<std::int64_t> unknown_since;  // this call's outcome is unknown: look next time
  std::int64_t look_waits = 0;                // jobs.look_waits after this
  std::int64_t task_failures = 0;             // jobs.task_failures after this
  bool sent_after_unknown = false;            // jobs.sent_after_unknown after this
  std::optional<std::string> task_error_code, task_error_msg;  // a failed task the look found
};

// How a task poll ended, and where the job goes next.
struct PollFinish {
  std::int64_t job_id = 0;
  std::int64_t at = 0;
  std::optional<std::string> task_status;  // nullopt: unchanged (the poll got no answer)
  JobState next_state = JobState::delivered;
  std::int64_t next_attempt_at = 0;
  std::optional<std::string> error_code, error_msg;  // set when the job leaves `delivered`
  std::optional<std::string> task_error_code, task_error_msg;  // reason of a FAILED_* task
  std::int64_t lease_until = 0;                                // PollWork::lease_until (the fence)
  std::int64_t poll_refusals = 0;  // refused polls in a row, after this one
  std::int64_t task_failures = 0;  // jobs.task_failures after this poll
};

// What to claim in the same transaction as a batch of outcomes (limit 0: nothing).
struct ClaimRequest {
  std::int64_t now = 0;
  std::int64_t poll_lease_until = 0;
  std::size_t limit = 0;  // polls first, then deliveries
};

struct Claimed {
  std::vector<PollWork> polls;
  std::vector<DeliveryWork> deliveries;
  std::vector<BatchStop> stops;  // batches the recorded outcomes stopped
};

}  // namespace kpsd
