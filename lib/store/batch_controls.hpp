#pragma once
// The operator's controls over a whole batch, and over all of kpsd: pause, resume, cancel and
// retry a batch (its jobs are those `list --batch` shows), and the global pause that outlives a
// restart. Each operation is one transaction, committed before it returns. Times are Unix ms;
// every operation throws sql::Error when the database fails (nothing of it is then committed).
// Used on the DB thread only (DbWorker::call with a `BatchControls&` parameter).
#include "model/job.hpp"
#include "model/job_records.hpp"

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

namespace kpsd {

class StoreConnection;
class BrakeRoom;

class BatchControls {
 public:
  BatchControls(StoreConnection& connection, BrakeRoom& brakes);  // prepares its statements
  ~BatchControls();
  BatchControls(const BatchControls&) = delete;
  BatchControls& operator=(const BatchControls&) = delete;

  // pause: the batch's queued and retrying jobs are held (not claimed) until resume_batch,
  // across restarts; jobs already on the wire or delivered go on. resume: its held jobs are given
  // back (a canary paused by the operator goes back to its canary) and its failure budget counts
  // afresh. cancel: every unfinished job, and the batch's pause ends (it has nothing left to
  // hold). BatchChange::found is false when there is no such batch.
  BatchChange pause_batch(std::int64_t batch_id, std::int64_t now);
  BatchChange resume_batch(std::int64_t batch_id, std::int64_t now);
  BatchChange cancel_batch(std::int64_t batch_id, std::int64_t now);
  // Retries the batch's jobs in `state` (failed or cancelled), each as JobCommands::retry does;
  // returns how many of each outcome.
  std::map<RetryOutcome, std::int64_t> retry_batch(std::int64_t batch_id, JobState state,
                                                   std::int64_t now);

  // kpsd's own pause (`kpsctl pause` without a batch), kept in `settings` across restarts.
  bool paused();
  void set_paused(bool paused);

 private:
  std::vector<std::int64_t> batch_members(std::int64_t batch_id, JobState state);

  StoreConnection& connection_;
  BrakeRoom& brakes_;
  struct Statements;  // batch_controls.cpp
  std::unique_ptr<Statements> sql_;
};

}  // namespace kpsd
