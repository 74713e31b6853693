#pragma once
// What a job is: its states (docs/operator-guide.md, "What kpsd does with a job") and the
// records the store keeps.
#include "core/result.hpp"
#include "core/secret.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kpsd {

enum class JobState { queued, running, retrying, delivered, succeeded, failed, cancelled };

std::string_view to_string(JobState state) noexcept;
std::optional<JobState> parse_job_state(std::string_view text) noexcept;
inline bool is_terminal(JobState s) noexcept {
  return s == JobState::succeeded || s == JobState::failed || s == JobState::cancelled;
}
inline constexpr JobState all_job_states[] = {
    JobState::queued,    JobState::running, JobState::retrying, JobState::delivered,
    JobState::succeeded, JobState::failed,  JobState::cancelled};

// Replace form of the unbind call: the password or private key to log in with afterwards.
struct JobAuth {
  std::string type;  // "password" or "keypair"
  Secret key;
  bool operator==(const JobAuth&) const = default;
};

struct NewJob {
  std::string server_id;
  std::optional<std::int64_t> port;
  std::optional<JobAuth> auth;
  bool operator==(const NewJob&) const = default;
};

// Checks a server id as the daemon accepts it; a failure says what is wrong.
Result<void> validate_server_id(std::string_view id);

// Checks a batch name: 1 to 64 bytes of UTF-8 without a control character, a C1 control or a
// bidi override, not all digits (a number is a batch id). A failure says what is wrong.
Result<void> validate_batch_name(std::string_view name);

// A job that fails after a call was sent again past an unknown outcome: the earlier call may
// have done the unbind. Its message starts with this (jobs.maybe_done is 1).
inline constexpr std::string_view maybe_done_prefix =
    "maybe done (an earlier call's outcome was unknown; it may have unbound the key): ";

struct Job {
  std::int64_t id = 0;
  std::string server_id;
  JobState state = JobState::queued;
  std::int64_t attempts = 0;
  std::int64_t next_attempt_at = 0;
  std::optional<std::string> task_id, delivery_status, task_status, error_code, error_msg;
  std::int64_t created_at = 0;
  std::int64_t updated_at = 0;
  std::optional<std::int64_t> port;
  std::optional<std::string> auth_type;
  std::optional<std::string> task_error_code, task_error_msg;
  std::int64_t task_failures = 0;  // its tasks that ended FAILED_*
  // It failed after a call was sent again past an unknown outcome: the earlier call may have
  // done the unbind (jobs.maybe_done).
  bool maybe_done = false;
  // Queued or retrying in a paused batch: not claimed until it resumes (next_attempt_at is then
  // the due time it had).
  bool held = false;
  bool operator==(const Job&) const = default;
};

struct Attempt {
  std::int64_t job_id = 0;
  std::int64_t n = 0;
  std::int64_t started_at = 0;
  std::optional<std::int64_t> finished_at, http_status, latency_ms;
  std::optional<std::string> task_id, delivery_status, error_code, error_msg, request_id;
  std::optional<std::string> look;  // what the look before the next call found (attempts.look)
  bool operator==(const Attempt&) const = default;
};

}  // namespace kpsd
