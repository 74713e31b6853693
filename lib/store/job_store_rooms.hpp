#pragma once
// The job store's rooms (not a public header). Each prepares its own statements in its own
// file, next to the code that runs them:
//   job_store.cpp      opening (file checks, PRAGMAs, migrations), settings, prune, secrets
//   job_lifecycle.cpp  the scheduler's writes: claim, record outcomes, recover after a restart
//   job_commands.cpp   the operator's writes: enqueue, retry, cancel
//   job_queries.cpp    reads: a page of jobs, a job, batches, counts, a waiting kpsctl's probes
//   batch_controls.cpp a batch's brakes and bulk controls: pause, resume, cancel, canary, budget
#include "store/job_store.hpp"
#include "store/sqlite.hpp"

namespace kpsd {

struct JobStore::Upkeep {  // deleting secrets, pruning, settings
  explicit Upkeep(sql::Database& db);
  sql::Statement delete_secret, select_prunable, count_prunable, delete_job, delete_empty_batches,
      get_setting, put_setting;
};

struct JobStore::Lifecycle {  // claims, outcomes, recovery
  explicit Lifecycle(sql::Database& db);
  sql::Statement promote_retries, select_due, select_due_unknown, mark_running, fail_key_gone,
      open_attempt, close_attempt, update_after_attempt, write_look, delete_open_attempt,
      release_claim, select_polls, lease_poll, update_after_poll, min_due, requeue_running,
      release_poll_leases, delete_ended_secrets, close_lost_attempts;
};

struct JobStore::Commands {  // enqueue, retry, cancel
  explicit Commands(sql::Database& db);
  sql::Statement find_active_by_server, insert_jobs, insert_secret, insert_batch, batch_by_id,
      batch_by_name, add_to_batch, extend_batch, retry_target, requeue_job, recheck_job,
      ids_in_state, cancel_job, job_exists;
};

struct JobStore::Queries {  // reads
  explicit Queries(sql::Database& db);
  sql::Statement find_job, list_jobs, list_jobs_by_state, list_jobs_by_server, list_jobs_by_batch,
      list_attempts, count_states, last_request_id, oldest_queued, batch_by_id, batch_by_name,
      recent_batches, paused_batches, batch_range, count_batch, count_unfinished_since, max_job_id,
      unfinished_between, joined_unfinished, min_unfinished_id;
};

struct JobStore::BatchRoom {  // a batch's brakes and bulk controls
  explicit BatchRoom(sql::Database& db);
  sql::Statement hold, hold_range, hold_one, release, reset_budget, set_pause, brake_row,
      batch_of_job, canary_tally, nth_own_job, set_canary_last, cancel_members, members_in_state;
};

// A batch's brakes and where they stand, as the brakes read them (batch_controls.cpp).
struct BatchBrakeRow {
  std::optional<std::string> name;
  std::optional<PauseReason> reason;
  std::optional<std::string> detail;
  Brakes brakes;
  std::optional<std::int64_t> canary_last_id;
  // Its own jobs that ended and failed since the budget last started (0009), and its id range
  // (first > last: it created none).
  std::int64_t ended = 0, failed = 0, first = 1, last = 0;
};

}  // namespace kpsd
