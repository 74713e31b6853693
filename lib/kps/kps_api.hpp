#pragma once
// The KPS v3 wire format, without I/O: request bodies, response parsing and the task-status
// rule. What a call's result means for the job is kps/classify.hpp.
#include "core/result.hpp"
#include "model/job.hpp"
#include "net/api_error.hpp"
#include "net/http_result.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kpsd {

// Body of POST /v3/{project_id}/keypairs/disassociate. The auth key is written into the body
// (that is the API); the body is never logged.
std::string make_disassociate_body(std::string_view server_id, std::optional<std::int64_t> port,
                                   const JobAuth* auth);

// The longest task id kpsd accepts. The vendor documents no format (docs/vendor-api.md); KPS's
// are UUID-like, 36 characters.
inline constexpr std::size_t max_task_id_bytes = 128;
// Whether `id` has a task id's shape: 1 to max_task_id_bytes of A-Z a-z 0-9 - _ . :, not
// starting with a dot. A task id from an answer becomes a URL path sent with the credential
// (GET tasks/{task_id}): `..`, a slash, a query or 200 KB never do (issue 31).
bool is_task_id(std::string_view id) noexcept;

// 202 body: {"task_id", "status"?, "error_code"?, "error_msg"?}. Codes and statuses are kept to
// 64 bytes, messages to 200, control characters blanked.
struct AcceptedBody {
  std::string task_id;
  std::string status;  // SUCCESS, FAILED, or empty when absent (= delivered)
  std::string error_code, error_msg;
};
// Fails, saying why, when the body is not JSON, has no string task_id (unless its status is
// FAILED), or a task_id that is not a task id's shape.
Result<AcceptedBody> parse_accepted_body(std::string_view body);

// GET /v3/{project_id}/tasks/{task_id} → {"server_id", "task_id", "task_status"}.
struct TaskBody {
  std::string task_id, server_id, task_status;
};
Result<TaskBody> parse_task_body(std::string_view body);

// A task as GET /v3/{project_id}/failed-tasks and GET /v3/{project_id}/running-tasks list it
// (docs/vendor-api.md; Go SDK model_failed_task.go, model_running_tasks.go): {"total", "tasks":
// [{task_id, operate_type, task_time, server_id, server_name, keypair_name, and for failures
// task_error_code, task_error_msg}]}.
struct TaskListEntry {
  std::string task_id, server_id, error_code, error_msg;
  std::string operate_type;  // as KPS writes it ("UNBIND" ...); may be empty
  // task_time in Unix ms: a string in the current Go model, an integer in older SDKs;
  // nullopt when absent or unreadable.
  std::optional<std::int64_t> task_time_ms;
  // false: its task_id is not a task id's shape (is_task_id; task_id then holds a printable
  // excerpt): never followed (a URL), and never taken for the absence of a task.
  bool followable = true;
};
using FailedTaskEntry = TaskListEntry;
struct TaskListPage {
  std::int64_t total = 0;  // 0 when absent or not an exact non-negative integer
  std::vector<TaskListEntry> tasks;
};
using FailedTasksPage = TaskListPage;
// Either list's page. Fails, saying why, when the body is not a JSON object with a tasks array;
// entries that are not objects are skipped.
Result<TaskListPage> parse_task_list_body(std::string_view body);
inline Result<FailedTasksPage> parse_failed_tasks_body(std::string_view body) {
  return parse_task_list_body(body);
}

enum class TaskPhase { pending, succeeded, failed };
// SUCCESS_* = succeeded, FAILED_* = failed, anything else = still pending.
TaskPhase task_phase(std::string_view task_status) noexcept;

// Retry-After as delta-seconds or an HTTP-date; nullopt when absent or unreadable.
std::optional<std::chrono::milliseconds> parse_retry_after(
    std::string_view value, std::chrono::system_clock::time_point now);

}  // namespace kpsd
