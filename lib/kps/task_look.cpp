#include "kps/task_look.hpp"

#include <algorithm>
#include <cctype>

namespace kpsd {

namespace {

// operate_type says BIND for an associate (never kpsd's); UNBIND, RESET, REPLACE or an empty
// or unknown value may be the lost call's.
bool is_bind(std::string_view operate_type) {
  std::string upper(operate_type);
  std::transform(upper.begin(), upper.end(), upper.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return upper.find("BIND") != std::string::npos && upper.find("UNBIND") == std::string::npos;
}

std::string waits_text(std::int64_t waits, const LookSettings& s) {
  return std::to_string(waits + 1) + " of " + std::to_string(s.max_waits);
}

// A task of this server that may be the lost call's: not a bind, not one the job already knows.
bool candidate(const TaskListEntry& t, std::string_view server_id,
               std::span<const std::string> known_tasks) {
  return t.server_id == server_id && !t.task_id.empty() && !is_bind(t.operate_type) &&
         std::find(known_tasks.begin(), known_tasks.end(), t.task_id) == known_tasks.end();
}

}  // namespace

const TaskListEntry* find_running_task(std::string_view server_id, const TaskListing& running,
                                       std::span<const std::string> known_tasks) {
  for (const TaskListEntry& t : running.tasks) {
    if (t.followable && candidate(t, server_id, known_tasks)) return &t;
  }
  return nullptr;
}

const TaskListEntry* find_failed_task_since(std::string_view server_id, std::int64_t since_ms,
                                            const TaskListing& failed,
                                            std::span<const std::string> known_tasks) {
  const TaskListEntry* newest = nullptr;
  for (const TaskListEntry& t : failed.tasks) {
    if (!candidate(t, server_id, known_tasks)) continue;
    if (!t.task_time_ms || *t.task_time_ms < since_ms) continue;  // an older job's failure
    if (!newest || *t.task_time_ms > *newest->task_time_ms) newest = &t;
  }
  return newest;
}

const TaskListEntry* find_task(std::string_view task_id, const TaskListing& listing) {
  for (const TaskListEntry& t : listing.tasks) {
    if (t.task_id == task_id) return &t;
  }
  return nullptr;
}

LookDecision decide_look(std::string_view server_id, std::int64_t unknown_since_ms,
                         const TaskListing& running, const TaskListing* failed, std::int64_t waits,
                         const LookSettings& s, std::span<const std::string> known_tasks) {
  LookDecision d;
  if (const TaskListEntry* t = find_running_task(server_id, running, known_tasks)) {
    d.kind = LookDecision::Kind::adopt;
    d.task = *t;
    d.note = "outcome unknown; adopted running task " + t->task_id;
    return d;
  }
  if (failed) {  // searched as far as it was read
    std::int64_t since = unknown_since_ms - s.clock_slack.count();
    if (const TaskListEntry* t = find_failed_task_since(server_id, since, *failed, known_tasks)) {
      d.kind = LookDecision::Kind::task_failed;
      d.task = *t;
      d.note = "outcome unknown; its task " + t->task_id + " failed";
      if (!t->error_code.empty()) d.note += " (" + t->error_code + ")";
      return d;
    }
  }
  // Not found. Proof only when the running list was read in full and was not at its cap.
  std::string doubt;
  auto unfollowable = std::find_if(running.tasks.begin(), running.tasks.end(), [&](const auto& t) {
    return !t.followable && candidate(t, server_id, known_tasks);
  });
  if (unfollowable != running.tasks.end()) {
    // Its task may be running, under an id kpsd will not put in a URL: never proof of absence.
    doubt = "a running task of this server is listed under an id kpsd cannot follow (`" +
            unfollowable->task_id + "`)";
  } else if (!running.error.empty()) {
    doubt = "running-task list unreadable (" + running.error + ")";
  } else if (running.total >= running_tasks_cap ||
             static_cast<std::int64_t>(running.tasks.size()) >= running_tasks_cap) {
    doubt = "running-task list full (" + std::to_string(running_tasks_cap) +
            " tasks) without this server";
  } else if (failed && !failed->error.empty()) {
    doubt = "failed-task list unreadable (" + failed->error + ")";
  }
  if (doubt.empty()) {
    d.kind = LookDecision::Kind::send_again;
    d.note = "outcome unknown; no task found; sending again";
  } else if (waits < s.max_waits) {
    d.kind = LookDecision::Kind::wait;
    d.note = "outcome unknown; " + doubt + "; looking again in " +
             std::to_string(s.wait.count() / 1000) + " s (" + waits_text(waits, s) + ")";
  } else {
    d.kind = LookDecision::Kind::send_again;
    d.note = "outcome unknown; " + doubt + " after " + std::to_string(s.max_waits) +
             " looks; sending again";
  }
  return d;
}

std::optional<LookDecision> settle_first(std::int64_t lost_at_ms, std::int64_t now_ms,
                                         const LookSettings& s) {
  std::int64_t deadline = lost_at_ms + s.settle.count();
  if (now_ms >= deadline) return std::nullopt;
  LookDecision d;
  d.kind = LookDecision::Kind::settle;
  d.look_at_ms = deadline;
  d.note = "outcome unknown; looking for its task " + std::to_string(s.settle.count() / 1000) +
           " s after the call was lost (a server may list it late)";
  return d;
}

std::string_view look_label(LookDecision::Kind kind) noexcept {
  switch (kind) {
    case LookDecision::Kind::adopt:
      return "adopted";
    case LookDecision::Kind::task_failed:
      return "task_failed";
    case LookDecision::Kind::send_again:
      return "sent_again";
    case LookDecision::Kind::wait:
    case LookDecision::Kind::settle:
      return "waited";
  }
  return "sent_again";
}

}  // namespace kpsd
