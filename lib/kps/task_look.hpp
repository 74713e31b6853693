#pragma once
// Look before sending again (docs/failure-modes.md, "Effectively once"): when a job's previous call
// has an unknown outcome (in flight at a crash, an answer unreadable after the request was sent, a
// timeout after sending), kpsd looks for the server's task in KPS's running-task and failed-task
// lists before it sends another disassociate. Plain code: the lists come in, the decision goes out;
// the scheduler fetches the lists (task_lists.hpp) and does what this says.
//
// Vendor facts it follows (docs/vendor-api.md): GET /v3/{project_id}/running-tasks lists at most
// 1,000 tasks (the Go SDK model caps `total` there), so a server missing from a full list is no
// proof that it has no task; a finished SUCCESS task is listed nowhere; failed tasks stay in
// GET /v3/{project_id}/failed-tasks until deleted, in an undocumented order.
#include "kps/classify.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kpsd {

// Every page of one of KPS's task lists, as one fetch read it.
struct TaskListing {
  std::vector<TaskListEntry> tasks;
  std::int64_t total = 0;  // as the first page said
  std::string error;       // non-empty: the list could not be read (why); `tasks` is partial
  int requests = 0;        // list requests it took
  std::chrono::steady_clock::time_point read_started{};  // when its first request went out
};

// The running-task list's cap in the vendor's model: a list this long may leave tasks out.
inline constexpr std::int64_t running_tasks_cap = 1000;

struct LookSettings {
  // A full or unreadable running-task list is looked at again this many times, this far apart,
  // before the call is sent anyway. 4 x 20 s outlasts a task (about a minute, docs/vendor-api.md).
  std::int64_t max_waits = 4;
  std::chrono::milliseconds wait{20000};
  // A failed task counts as the lost call's when its task_time is no older than the call's
  // start less this (the clocks of kpsd and KPS differ a little).
  std::chrono::milliseconds clock_slack{60000};
  // The look waits this long (kps.request_timeout_ms) after kpsd learned the outcome was lost
  // (its connection closed, or the restart): the server may still be working on a request it
  // received and not have listed its task yet.
  std::chrono::milliseconds settle{15000};
};

struct LookDecision {
  enum class Kind {
    adopt,        // a running task for the server: the job follows it, no new call
    task_failed,  // a failed task newer than the lost call: the FAILED_* rule applies
    send_again,   // no task found, with a complete list: send the call again
    wait,         // the running list was full (or unreadable): look again later
    settle,       // too early to look: the lost call may still be in the server's hands
  };
  Kind kind = Kind::send_again;
  TaskListEntry task;           // adopt, task_failed
  std::string note;             // for the attempt row, the log and the operator
  std::int64_t look_at_ms = 0;  // settle: when to look (Unix ms)
};

// Before any list is read: a settle decision when `now_ms` is before `lost_at_ms` (when kpsd
// learned the call's outcome was lost: its attempt's finished_at, or the restart) plus
// settings.settle, else nullopt (look now).
std::optional<LookDecision> settle_first(std::int64_t lost_at_ms, std::int64_t now_ms,
                                         const LookSettings& settings);

// Looks `server_id` up. `running`: the running-task listing; `failed`: the failed-task listing,
// or nullptr when it was not needed (a running task was found first). `unknown_since_ms`: when
// the call with the unknown outcome started (Unix ms); `waits`: looks that already waited;
// `known_tasks`: the job's own earlier tasks (already followed: never taken for the lost one).
// A list that could not be read in full is searched as far as it was read, and, when the
// server is not found, is a doubt like a full running list.
LookDecision decide_look(std::string_view server_id, std::int64_t unknown_since_ms,
                         const TaskListing& running, const TaskListing* failed, std::int64_t waits,
                         const LookSettings& settings,
                         std::span<const std::string> known_tasks = {});

// The running task of `server_id` in `running`, if there is one (an unbind, reset or replace:
// anything but a bind, which kpsd never starts), other than `known_tasks`.
const TaskListEntry* find_running_task(std::string_view server_id, const TaskListing& running,
                                       std::span<const std::string> known_tasks = {});

// The newest failed task of `server_id` whose task_time is at or after `since_ms`, other than
// `known_tasks`, if any.
const TaskListEntry* find_failed_task_since(std::string_view server_id, std::int64_t since_ms,
                                            const TaskListing& failed,
                                            std::span<const std::string> known_tasks = {});

// The failed-task entry of `task_id`, if the listing has it.
const TaskListEntry* find_task(std::string_view task_id, const TaskListing& listing);

// The metric label of a look's decision: adopted, task_failed, sent_again, waited.
std::string_view look_label(LookDecision::Kind kind) noexcept;

}  // namespace kpsd
