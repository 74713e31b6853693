#pragma once
// The operator's writes on jobs: enqueue (into a batch), retry and cancel. Each operation is one
// transaction, committed before it returns. Times are Unix ms; every operation throws sql::Error
// when the database fails (nothing of it is then committed). Used on the DB thread only
// (DbWorker::call with a `JobCommands&` parameter).
#include "core/result.hpp"
#include "model/job.hpp"
#include "model/job_records.hpp"

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace kpsd {

class StoreConnection;
class BrakeRoom;

class JobCommands {
 public:
  JobCommands(StoreConnection& connection, BrakeRoom& brakes);  // prepares its statements
  ~JobCommands();
  JobCommands(const JobCommands&) = delete;
  JobCommands& operator=(const JobCommands&) = delete;

  // Queues jobs into a batch (see BatchTarget), all in one transaction; their keys are sealed
  // before SQLite sees them. A server with an unfinished job gets no second one: its result
  // names that job (existing), which joins the batch. The first overload makes a new unnamed
  // batch; the second reports a taken name or an unknown batch id in `error` (nothing queued).
  std::vector<EnqueueResult> enqueue(std::span<const NewJob> jobs, std::int64_t now);
  EnqueueBatchResult enqueue(std::span<const NewJob> jobs, std::int64_t now,
                             const BatchTarget& batch);

  // Retries one failed or cancelled job. `unfinished_job`: set to the server's unfinished job
  // when that refuses it (server_busy).
  RetryOutcome retry(std::int64_t id, std::int64_t now, std::int64_t* unfinished_job = nullptr);
  // Retries every job in `state` (failed or cancelled); returns how many of each outcome.
  std::map<RetryOutcome, std::int64_t> retry_all(JobState state, std::int64_t now);
  // Cancels one unfinished job (its key is deleted; its batch's canary may end with it).
  CancelOutcome cancel(std::int64_t id, std::int64_t now);

 private:
  // Inside the caller's transaction.
  std::vector<std::int64_t> insert_rows(const std::vector<const NewJob*>& fresh, std::int64_t now,
                                        std::int64_t batch_id);
  Result<std::int64_t> open_batch(const BatchTarget& batch, std::int64_t now);

  StoreConnection& connection_;
  BrakeRoom& brakes_;
  struct Statements;  // job_commands.cpp
  std::unique_ptr<Statements> sql_;
};

}  // namespace kpsd
