#pragma once
// The rows the store's reads share (store/job_queries.cpp; not a public header): the columns of
// a job and of a batch as SELECT lists, and each row's columns by name, looked up once per
// prepared statement so a column added to a SELECT cannot shift the others.
#include "store/sqlite.hpp"

namespace kpsd::query_rows {

// The columns read_job reads (by name).
inline constexpr const char* job_columns =
    "id, server_id, state, attempts, next_attempt_at, task_id, delivery_status, task_status, "
    "error_code, error_msg, created_at, updated_at, port, auth_type, task_error_code, "
    "task_error_msg, task_failures, maybe_done";

// The columns of job_columns, looked up by name once per statement.
struct JobColumns {
  explicit JobColumns(const sql::Statement& s)
      : id(s.column_index("id")),
        server_id(s.column_index("server_id")),
        state(s.column_index("state")),
        attempts(s.column_index("attempts")),
        next_attempt_at(s.column_index("next_attempt_at")),
        task_id(s.column_index("task_id")),
        delivery_status(s.column_index("delivery_status")),
        task_status(s.column_index("task_status")),
        error_code(s.column_index("error_code")),
        error_msg(s.column_index("error_msg")),
        created_at(s.column_index("created_at")),
        updated_at(s.column_index("updated_at")),
        port(s.column_index("port")),
        auth_type(s.column_index("auth_type")),
        task_error_code(s.column_index("task_error_code")),
        task_error_msg(s.column_index("task_error_msg")),
        task_failures(s.column_index("task_failures")),
        maybe_done(s.column_index("maybe_done")) {}
  int id, server_id, state, attempts, next_attempt_at, task_id, delivery_status, task_status,
      error_code, error_msg, created_at, updated_at, port, auth_type, task_error_code,
      task_error_msg, task_failures, maybe_done;
};

// The columns read_batch reads (by name).
inline constexpr const char* batch_columns =
    "SELECT id, name, created_at, paused_reason, coalesce(paused_at, 0) AS paused_since, "
    "paused_detail, canary, "
    "max_failures, max_failure_pct, ended, failed FROM batches ";

// The columns of batch_columns, looked up by name once per statement.
struct BatchColumns {
  explicit BatchColumns(const sql::Statement& s)
      : id(s.column_index("id")),
        name(s.column_index("name")),
        created_at(s.column_index("created_at")),
        paused_reason(s.column_index("paused_reason")),
        paused_at(s.column_index("paused_since")),
        paused_detail(s.column_index("paused_detail")),
        canary(s.column_index("canary")),
        max_failures(s.column_index("max_failures")),
        max_failure_pct(s.column_index("max_failure_pct")),
        ended(s.column_index("ended")),
        failed(s.column_index("failed")) {}
  int id, name, created_at, paused_reason, paused_at, paused_detail, canary, max_failures,
      max_failure_pct, ended, failed;
};

// The columns of list_attempts, looked up by name once.
struct AttemptColumns {
  explicit AttemptColumns(const sql::Statement& s)
      : job_id(s.column_index("job_id")),
        n(s.column_index("n")),
        started_at(s.column_index("started_at")),
        finished_at(s.column_index("finished_at")),
        http_status(s.column_index("http_status")),
        task_id(s.column_index("task_id")),
        delivery_status(s.column_index("delivery_status")),
        error_code(s.column_index("error_code")),
        error_msg(s.column_index("error_msg")),
        request_id(s.column_index("request_id")),
        latency_ms(s.column_index("latency_ms")),
        look(s.column_index("look")) {}
  int job_id, n, started_at, finished_at, http_status, task_id, delivery_status, error_code,
      error_msg, request_id, latency_ms, look;
};

}  // namespace kpsd::query_rows
