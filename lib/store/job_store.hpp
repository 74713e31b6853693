#pragma once
// The SQLite job store: every state change of every job goes through here, each in a
// transaction committed before the caller acts on it. Used from one thread (the DB thread).
#include "model/batch_brakes.hpp"
#include "model/job.hpp"
#include "model/job_endings.hpp"
#include "model/job_records.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace kpsd {

namespace sql {
class Database;
class Statement;
}  // namespace sql

// What a held job's next_attempt_at carries on top of its due time: 2^52 ms. A queued or
// retrying job of a paused batch is held (migration 0009): never due, so never claimed.
inline constexpr std::int64_t held_offset = std::int64_t{1} << 52;

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

struct BatchBrakeRow;  // job_store_rooms.hpp
class SecretBox;       // secret_box.hpp

// A canary's first jobs: how many, how many have not ended, and how they ended.
struct CanaryTally {
  std::int64_t total = 0, open = 0, succeeded = 0, failed = 0;
};

class JobStore {
 public:
  // Opens (creating 0600 if needed) and migrates. Throws sql::Error / std::runtime_error.
  explicit JobStore(const std::string& path);
  ~JobStore();
  JobStore(const JobStore&) = delete;
  JobStore& operator=(const JobStore&) = delete;

  int schema_version() const noexcept { return schema_version_; }
  // The jobs this store has ended, counted as each transaction commits (job_endings.hpp).
  std::shared_ptr<const JobEndings> endings() const noexcept { return endings_; }

  // The WAL's bound (bytes), SQLite's own auto-checkpoint size (1,000 pages of 4 KiB): SQLite
  // truncates the WAL back to it when it restarts the log after a checkpoint
  // (journal_size_limit), and trim_wal() truncates it when idle. While a reader
  // holds an old snapshot (an open sqlite3 transaction) the WAL grows past it; it shrinks back
  // once the reader is gone.
  static constexpr std::int64_t wal_size_limit = 4 * 1024 * 1024;

  // When the WAL file is over wal_size_limit: checkpoints it in full and truncates it to 0,
  // without waiting for a reader (a reader still holding it leaves it as it is: tried again
  // later). Returns the WAL's size in bytes afterwards (0 for ":memory:" or no WAL file).
  std::int64_t trim_wal();

  // Start-up: jobs left `running` go back to `queued` (or to `failed` once they have used
  // `max_attempts`); their open attempt rows are closed as "outcome lost". Returns how many
  // jobs were requeued or failed. Those failures count against their batch's failure budget,
  // in the same transaction: a batch they stopped is added to `stops` (when given).
  int recover_after_restart(std::int64_t now, std::int64_t max_attempts,
                            std::vector<BatchStop>* stops = nullptr);

  // Queues jobs into a batch (see BatchTarget), all in one transaction. The first overload
  // makes a new unnamed batch.
  std::vector<EnqueueResult> enqueue(std::span<const NewJob> jobs, std::int64_t now);
  EnqueueBatchResult enqueue(std::span<const NewJob> jobs, std::int64_t now,
                             const BatchTarget& batch);

  // A batch by id ("42") or name, with its jobs counted per state; nullopt if there is none.
  // `count`: also count its jobs per state (a pass over the batch; list needs only the id).
  std::optional<Batch> find_batch(std::string_view id_or_name, bool count = true);
  std::map<JobState, std::int64_t> count_batch(std::int64_t batch_id);
  // The newest batches first, each with its jobs counted per state.
  std::vector<Batch> list_batches(std::int64_t limit);
  // What a bare `kpsctl wait` follows: jobs with ids from min_id to max_id that were
  // unfinished at `since` (still unfinished, or finished at or after it), per state.
  std::map<JobState, std::int64_t> count_unfinished_since(std::int64_t min_id, std::int64_t max_id,
                                                          std::int64_t since);
  std::int64_t max_job_id();
  // Cheap questions for a waiting kpsctl (index seeks, not counts): is any job unfinished?
  bool any_unfinished_between(std::int64_t min_id, std::int64_t max_id);
  bool batch_unfinished(std::int64_t batch_id);
  std::optional<std::int64_t> min_unfinished_id();  // nullopt: every job has finished

  // Deletes up to `limit` finished jobs (succeeded, failed, cancelled) that ended before
  // `before` (and match `filter`), with their attempts and batch memberships, and the batches
  // left with no job: one transaction. Returns the jobs deleted (0: nothing older is left).
  std::int64_t prune_finished(std::int64_t before, std::int64_t limit,
                              const PruneFilter& filter = {});
  // What prune_finished would delete: finished jobs per (batch, state); batch 0 for jobs of no
  // batch. A dry run reads, and deletes nothing.
  std::map<std::pair<std::int64_t, JobState>, std::int64_t> count_prunable(
      std::int64_t before, const PruneFilter& filter = {});

  // retrying → queued for due jobs, then claims up to `limit` due queued jobs: each becomes
  // `running` with an open attempt row, all in one transaction. A replace-form job whose key is
  // gone fails instead, and counts against its batch's budget: a batch that stopped is added to
  // `stops` (when given).
  std::vector<DeliveryWork> claim_for_delivery(std::int64_t now, std::size_t limit,
                                               std::vector<BatchStop>* stops = nullptr);
  void finish_attempts(std::span<const AttemptFinish> finished);

  // Claims up to `limit` delivered jobs due for a task poll; moves their next_attempt_at to
  // `lease_until` so a poll in flight is not started twice (and resumes after a crash).
  std::vector<PollWork> claim_for_poll(std::int64_t now, std::int64_t lease_until,
                                       std::size_t limit);
  void finish_polls(std::span<const PollFinish> finished);

  // Records outcomes and claims what `next` asks for (polls first), in one transaction: one
  // fsync covers both, and the slots the outcomes free are filled without another round trip.
  Claimed finish_and_claim(std::span<const AttemptFinish> finished, const ClaimRequest& next);
  Claimed finish_and_claim(std::span<const PollFinish> finished, const ClaimRequest& next);

  // Earliest next_attempt_at over queued, retrying and delivered jobs.
  std::optional<std::int64_t> next_due_at();

  std::vector<Job> list(ListQuery q);
  // The use cases both front doors share, each one read: a page of jobs, narrowed to a batch
  // given by id ("42") or name when `batch` is set (it overrides q.batch_id); and a job with its
  // attempts (nullopt: no such job).
  JobPage list_page(ListQuery q, const std::optional<std::string>& batch, bool with_request_ids);
  std::optional<JobDetail> job_with_attempts(std::int64_t id);
  std::optional<Job> find(std::int64_t id);
  std::vector<Attempt> attempts_of(std::int64_t job_id);
  // The X-Request-Id of the job's newest attempt that has one (what support asks for).
  std::optional<std::string> last_request_id(std::int64_t job_id);
  std::map<JobState, std::int64_t> count_by_state();  // kept by triggers: seven rows
  std::optional<std::int64_t> oldest_queued_due();    // min next_attempt_at of queued jobs

  // `unfinished_job`: set to the server's unfinished job when that refuses it (server_busy).
  RetryOutcome retry(std::int64_t id, std::int64_t now, std::int64_t* unfinished_job = nullptr);
  // Retries every job in `state` (failed or cancelled); returns how many of each outcome.
  std::map<RetryOutcome, std::int64_t> retry_all(JobState state, std::int64_t now);
  CancelOutcome cancel(std::int64_t id, std::int64_t now);

  // A batch's bulk controls; its jobs are those `list --batch` shows. pause: its queued and
  // retrying jobs are held (not claimed) until resume_batch, across restarts; jobs already on
  // the wire or delivered go on. cancel: every unfinished job, and the batch's pause ends (it
  // has nothing left to hold). retry: its jobs in `state` (failed or cancelled), as retry does
  // each.
  BatchChange pause_batch(std::int64_t batch_id, std::int64_t now);
  BatchChange resume_batch(std::int64_t batch_id, std::int64_t now);
  BatchChange cancel_batch(std::int64_t batch_id, std::int64_t now);
  std::map<RetryOutcome, std::int64_t> retry_batch(std::int64_t batch_id, JobState state,
                                                   std::int64_t now);
  std::vector<Batch> paused_batches();  // oldest first, without counts

  bool paused();
  void set_paused(bool paused);

 private:
  // The parts, inside the caller's transaction. The record_* return secrets deleted.
  int record_attempts(std::span<const AttemptFinish> finished);
  void update_job_after_attempt(const AttemptFinish& f);
  std::vector<std::int64_t> insert_rows(const std::vector<const NewJob*>& fresh, std::int64_t now,
                                        std::int64_t batch_id);
  std::string open_batch(const BatchTarget& batch, std::int64_t now, std::int64_t& batch_id);
  void record_without_call(const AttemptFinish& f);
  void count_endings();  // the tally's commit hook (constructor)
  // `jobs` rows just moved to final `state` in the open transaction (db changes, not intents: a
  // fenced outcome that changed nothing ends nothing).
  void note_ended(JobState state, std::int64_t jobs);
  int record_polls(std::span<const PollFinish> finished);
  // A replace-form job whose key is gone fails instead of being claimed, and the brakes count
  // it: a batch that stopped is added to `stops`.
  std::vector<DeliveryWork> claim_deliveries(std::int64_t now, std::size_t limit,
                                             std::vector<BatchStop>& stops);
  std::vector<PollWork> claim_polls(std::int64_t now, std::int64_t lease_until, std::size_t limit);
  Claimed claim(const ClaimRequest& next);
  // `ended`: the jobs the record moves to a terminal state (their batches' brakes are checked).
  Claimed record_and_claim(const std::function<int()>& record, std::span<const std::int64_t> ended,
                           const ClaimRequest& next);
  int delete_secret(std::int64_t job_id);  // rows deleted
  // A batch's first_job_id and last_job_id; {1, 0} (empty) when it created no job.
  std::pair<std::int64_t, std::int64_t> batch_range(std::int64_t batch_id);
  void scrub_wal();
  // Brakes (batch_controls.cpp), inside the caller's transaction.
  std::int64_t hold_batch(std::int64_t batch_id, std::optional<std::int64_t> exempt_up_to);
  void pause_in_tx(std::int64_t batch_id, PauseReason reason,
                   const std::optional<std::string>& detail, std::int64_t now);
  void end_pause_in_tx(std::int64_t batch_id);  // the jobs it held are the caller's to release
  void hold_new_jobs(std::int64_t batch_id, std::int64_t chunk_first, std::int64_t chunk_last,
                     std::span<const std::int64_t> joined);
  std::vector<BatchStop> apply_brakes(std::span<const std::int64_t> ended_jobs, std::int64_t now);
  std::optional<BatchStop> check_brakes(std::int64_t batch_id, const BatchBrakeRow& row,
                                        std::int64_t now);
  std::vector<std::int64_t> batch_members(std::int64_t batch_id, JobState state);
  CanaryTally canary_tally(const BatchBrakeRow& row, std::int64_t batch_id);
  bool canary_open(const BatchBrakeRow& row, std::int64_t batch_id);  // a canary job unfinished
  // ?1 before, ?3 state, ?4..?6 batch and its id range (the prune statements' parameters).
  void bind_prune_filter(sql::Statement& s, std::int64_t before, const PruneFilter& filter);
  // The rooms' statements (job_store_rooms.hpp), each prepared in its room's file.
  struct Upkeep;
  struct Lifecycle;
  struct Commands;
  struct Queries;
  struct BatchRoom;
  // Jobs' keys are sealed before they reach SQLite (secret_box.hpp).
  std::unique_ptr<SecretBox> box_;
  // Before db_: its transaction-end callback writes the tally while db_ lives.
  std::shared_ptr<JobEndings> endings_;
  JobEndings::Tally ending_now_{};  // this transaction's endings, so far
  std::unique_ptr<sql::Database> db_;
  std::unique_ptr<Upkeep> upkeep_;
  std::unique_ptr<Lifecycle> lifecycle_;
  std::unique_ptr<Commands> commands_;
  std::unique_ptr<Queries> queries_;
  std::unique_ptr<BatchRoom> batches_;
  int schema_version_ = 0;
  std::string path_;
};

}  // namespace kpsd
