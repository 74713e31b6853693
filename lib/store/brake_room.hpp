#pragma once
// A batch's brakes, inside the caller's transaction (not a public header): holding and
// releasing its jobs (migration 0009), its pause, the canary at enqueue, and the failure budget
// checked in each transaction of outcomes. The work queue, the commands and the batch controls
// each hold a reference; JobStore owns it.
#include "model/batch_brakes.hpp"
#include "model/job_records.hpp"
#include "store/sqlite.hpp"

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace kpsd {

class StoreConnection;

// The batch's jobs, as `kpsctl list --batch` shows them: those it created (a rowid range, see
// 0006) and those it named that other batches had queued (batch_jobs). ?1 batch, ?2 and ?3 its
// first and last job id. Shared by the brakes and the batch controls.
inline constexpr const char* batch_members_cte =
    "WITH members(id) AS (SELECT id FROM jobs WHERE id BETWEEN ?2 AND ?3 AND batch_id = ?1 "
    "UNION SELECT job_id FROM batch_jobs WHERE batch_id = ?1) ";

// A batch's brakes and where they stand, as the brakes read them.
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

// A canary's first jobs: how many, how many have not ended, and how they ended.
struct CanaryTally {
  std::int64_t total = 0, open = 0, succeeded = 0, failed = 0;
};

// Every function runs inside the caller's open write transaction and throws sql::Error; times
// are Unix ms.
class BrakeRoom {
 public:
  explicit BrakeRoom(StoreConnection& connection);
  ~BrakeRoom();
  BrakeRoom(const BrakeRoom&) = delete;
  BrakeRoom& operator=(const BrakeRoom&) = delete;

  // The batch's brakes and counters; nullopt when there is no such batch.
  std::optional<BatchBrakeRow> read_row(std::int64_t batch_id);
  // Holds the batch's queued and retrying jobs, but its own jobs up to `exempt_up_to` (a
  // running canary's). Returns the jobs held.
  std::int64_t hold_batch(std::int64_t batch_id, std::optional<std::int64_t> exempt_up_to);
  void pause(std::int64_t batch_id, PauseReason reason, const std::optional<std::string>& detail,
             std::int64_t now);
  void end_pause(std::int64_t batch_id);  // the jobs it held are the caller's to release
  // A canary's or a paused batch's jobs just enqueued (its own from chunk_first to chunk_last,
  // and `joined`, other batches' jobs it named) are held before anything can claim them.
  void hold_new_jobs(std::int64_t batch_id, std::int64_t chunk_first, std::int64_t chunk_last,
                     std::span<const std::int64_t> joined);
  // Jobs that just ended: their batches' budgets and canaries are checked; returns the batches
  // that stopped (paused themselves, or whose canary ended).
  std::vector<BatchStop> apply(std::span<const std::int64_t> ended_jobs, std::int64_t now);
  bool canary_open(const BatchBrakeRow& row, std::int64_t batch_id);  // a canary job unfinished

 private:
  std::optional<BatchStop> check(std::int64_t batch_id, const BatchBrakeRow& row, std::int64_t now);
  CanaryTally canary_tally(const BatchBrakeRow& row, std::int64_t batch_id);

  StoreConnection& connection_;
  sql::Statement hold_, hold_range_, hold_one_, set_pause_, brake_row_, batch_of_job_,
      canary_tally_, nth_own_job_, set_canary_last_;
  struct RowColumns {  // brake_row_'s columns, by name
    explicit RowColumns(const sql::Statement& s);
    int name, reason, detail, canary, canary_last_id, max_failures, max_failure_pct, ended, failed,
        first, last;
  } row_;
  struct TallyColumns {  // canary_tally_'s columns, by name
    int total, open, succeeded, failed;
  } tally_;
};

}  // namespace kpsd
