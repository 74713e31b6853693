#pragma once
// The SQL of the scheduler's room (store/work_queue.cpp), one constant per statement, named as
// the statement it prepares. Included by work_queue.cpp only. Computed columns carry an alias:
// the room reads every multi-column row by column name.
#include "store/job_store.hpp"
#include "store/sqlite.hpp"

#include <string>
#include <string_view>

namespace kpsd::work_queue_sql {

// A due job as a claim reads it, before its attempt is opened.
inline constexpr std::string_view due_columns =
    "SELECT j.id, j.server_id, j.port, j.auth_type, j.attempts, s.key, "
    "(SELECT a.http_status FROM attempts a WHERE a.job_id = j.id ORDER BY a.n DESC LIMIT 1) "
    "AS last_http_status, j.unknown_since, j.look_waits, j.task_failures, "
    "j.sent_after_unknown, "
    // Only for a job to look for: when its last call was lost, and the tasks it already knows.
    "CASE WHEN j.unknown_since IS NOT NULL THEN (SELECT a.finished_at FROM attempts a "
    "WHERE a.job_id = j.id ORDER BY a.n DESC LIMIT 1) END AS lost_at, "
    "CASE WHEN j.unknown_since IS NOT NULL THEN (SELECT group_concat(a.task_id, ' ') "
    "FROM attempts a WHERE a.job_id = j.id AND a.task_id IS NOT NULL) END AS known_tasks ";

inline constexpr std::string_view promote_retries =
    "UPDATE jobs SET state = 'queued', updated_at = ?1 "
    "WHERE state = 'retrying' AND next_attempt_at <= ?1";

inline const std::string select_due =
    std::string(due_columns) +
    "FROM jobs j LEFT JOIN job_secrets s ON s.job_id = j.id "
    "WHERE j.state = 'queued' AND j.next_attempt_at <= ?1 "
    "AND j.unknown_since IS NULL ORDER BY j.next_attempt_at, j.id LIMIT ?2";

// Ahead of the backlog: a job to look for (jobs_unknown_due), while its task may still run.
inline const std::string select_due_unknown =
    std::string(due_columns) +
    "FROM jobs j INDEXED BY jobs_unknown_due "
    "LEFT JOIN job_secrets s ON s.job_id = j.id WHERE j.state = 'queued' "
    "AND j.unknown_since IS NOT NULL AND j.next_attempt_at <= ?1 "
    "ORDER BY j.next_attempt_at, j.id LIMIT ?2";

// The attempt is used when the call is claimed, so a call that kills kpsd still counts.
inline constexpr std::string_view mark_running =
    "UPDATE jobs SET state = 'running', attempts = attempts + 1, updated_at = ?2 "
    "WHERE id = ?1";

inline constexpr std::string_view fail_key_gone =
    "UPDATE jobs SET state = 'failed', error_code = NULL, "
    "error_msg = 'key no longer held: enqueue again with the key', "
    "updated_at = ?2 WHERE id = ?1";

inline constexpr std::string_view open_attempt =
    "INSERT INTO attempts (job_id, n, started_at) VALUES (?1, "
    "(SELECT coalesce(max(n), 0) + 1 FROM attempts WHERE job_id = ?1), ?2) "
    "RETURNING n";

inline constexpr std::string_view close_attempt =
    "UPDATE attempts SET finished_at = ?3, http_status = ?4, task_id = ?5, "
    "delivery_status = ?6, error_code = ?7, error_msg = ?8, request_id = ?9, "
    "latency_ms = ?10 WHERE job_id = ?1 AND n = ?2";

// Fenced: only the job's current call (its newest attempt row) moves it.
inline constexpr std::string_view update_after_attempt =
    "UPDATE jobs SET state = ?2, attempts = attempts - ?3, next_attempt_at = ?4, "
    "task_id = ?5, delivery_status = ?6, task_status = NULL, error_code = ?7, "
    "error_msg = ?8, updated_at = ?9, poll_refusals = 0, unknown_since = ?11, "
    "look_waits = ?12, task_failures = ?13, sent_after_unknown = ?14, "
    "task_error_code = coalesce(?15, task_error_code), "
    "task_error_msg = coalesce(?16, task_error_msg), "
    "delivered_at = CASE WHEN ?2 = 'delivered' THEN ?9 ELSE delivered_at END "
    "WHERE id = ?1 AND state = 'running' AND NOT EXISTS "
    "(SELECT 1 FROM attempts a WHERE a.job_id = ?1 AND a.n > ?10)";

// The look's decision, on the attempt whose outcome was unknown (the one before ?2).
inline constexpr std::string_view write_look =
    "UPDATE attempts SET look = ?3 WHERE job_id = ?1 AND n = "
    "(SELECT max(n) FROM attempts WHERE job_id = ?1 AND n < ?2)";

inline constexpr std::string_view delete_open_attempt =
    "DELETE FROM attempts WHERE job_id = ?1 AND n = ?2 "
    "AND finished_at IS NULL";

inline constexpr std::string_view release_claim =
    "UPDATE jobs SET state = 'queued', attempts = attempts - 1, "
    "next_attempt_at = ?3, updated_at = ?3 WHERE id = ?1 AND state = 'running' "
    "AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.job_id = ?1 AND a.n > ?2)";

inline constexpr std::string_view select_polls =
    "SELECT id, attempts, task_id, coalesce(delivered_at, updated_at) AS delivered_since, "
    "poll_refusals, server_id, task_failures, sent_after_unknown FROM jobs "
    "WHERE state = 'delivered' AND next_attempt_at <= ?1 "
    "ORDER BY next_attempt_at, id LIMIT ?2";

inline constexpr std::string_view lease_poll = "UPDATE jobs SET next_attempt_at = ?2 WHERE id = ?1";

// A success clears the reasons of earlier failed attempts; otherwise a NULL keeps them.
// Fenced: only the poll holding the current lease (next_attempt_at) moves the job.
inline constexpr std::string_view update_after_poll =
    "UPDATE jobs SET state = ?2, next_attempt_at = ?3, poll_refusals = ?11, "
    "task_status = coalesce(?4, task_status), "
    "error_code = CASE WHEN ?2 = 'succeeded' THEN NULL "
    "ELSE coalesce(?5, error_code) END, "
    "error_msg = CASE WHEN ?2 = 'succeeded' THEN NULL "
    "ELSE coalesce(?6, error_msg) END, "
    "task_error_code = coalesce(?8, task_error_code), "
    "task_error_msg = coalesce(?9, task_error_msg), updated_at = ?7, "
    "task_failures = ?12 "
    "WHERE id = ?1 AND state = 'delivered' AND next_attempt_at = ?10";

// Held jobs (a paused batch's, 0009) are not due at any time.
inline const std::string min_due =
    "SELECT min(next_attempt_at) FROM jobs WHERE state = ?1 AND next_attempt_at < " +
    std::to_string(held_offset);

// A job whose calls keep killing kpsd runs out of attempts like any other.
inline constexpr std::string_view requeue_running =
    "UPDATE jobs SET updated_at = ?1, next_attempt_at = ?1, "
    "state = CASE WHEN attempts >= ?2 THEN 'failed' ELSE 'queued' END, "
    "error_msg = CASE WHEN attempts >= ?2 THEN ?3 || 'gave up after ' || "
    "attempts || ' attempts: outcome lost: daemon stopped' ELSE error_msg END, "
    // Its call was in flight: look for its task before sending again (an
    // earlier unknown call not yet looked for stays the one to look for).
    "unknown_since = coalesce(unknown_since, (SELECT a.started_at "
    "FROM attempts a WHERE a.job_id = jobs.id ORDER BY a.n DESC LIMIT 1)), "
    "look_waits = 0 WHERE state = 'running' RETURNING id, state";

// Polls leased by the process that died are due now, not when their lease would end.
inline constexpr std::string_view release_poll_leases =
    "UPDATE jobs SET next_attempt_at = ?1 "
    "WHERE state = 'delivered' AND next_attempt_at > ?1";

inline constexpr std::string_view delete_ended_secrets =
    "DELETE FROM job_secrets WHERE job_id IN (SELECT id FROM jobs "
    "WHERE state IN ('succeeded','failed','cancelled'))";

inline constexpr std::string_view close_lost_attempts =
    "UPDATE attempts SET finished_at = ?1, "
    "error_msg = 'outcome lost: daemon stopped' "
    "WHERE finished_at IS NULL";

// A due job's columns (due_columns above), looked up by name once per statement.
struct DueColumns {
  explicit DueColumns(const sql::Statement& s)
      : id(s.column_index("id")),
        server_id(s.column_index("server_id")),
        port(s.column_index("port")),
        auth_type(s.column_index("auth_type")),
        attempts(s.column_index("attempts")),
        key(s.column_index("key")),
        last_http_status(s.column_index("last_http_status")),
        unknown_since(s.column_index("unknown_since")),
        look_waits(s.column_index("look_waits")),
        task_failures(s.column_index("task_failures")),
        sent_after_unknown(s.column_index("sent_after_unknown")),
        lost_at(s.column_index("lost_at")),
        known_tasks(s.column_index("known_tasks")) {}
  int id, server_id, port, auth_type, attempts, key, last_http_status, unknown_since, look_waits,
      task_failures, sent_after_unknown, lost_at, known_tasks;
};

// A poll's columns (select_polls above), looked up by name once.
struct PollColumns {
  explicit PollColumns(const sql::Statement& s)
      : id(s.column_index("id")),
        attempts(s.column_index("attempts")),
        task_id(s.column_index("task_id")),
        delivered_since(s.column_index("delivered_since")),
        poll_refusals(s.column_index("poll_refusals")),
        server_id(s.column_index("server_id")),
        task_failures(s.column_index("task_failures")),
        sent_after_unknown(s.column_index("sent_after_unknown")) {}
  int id, attempts, task_id, delivered_since, poll_refusals, server_id, task_failures,
      sent_after_unknown;
};

}  // namespace kpsd::work_queue_sql
