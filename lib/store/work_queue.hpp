#pragma once
// The scheduler's room in the store: claims of calls and polls, their outcomes (fenced to the
// claim or lease they belong to), the next due time, and the recovery after a restart. Each
// operation is one transaction, committed before it returns. Times are Unix ms; every operation
// throws sql::Error when the database fails (nothing of it is then committed). Used on the DB
// thread only (DbWorker::call with a `WorkQueue&` parameter).
#include "model/job_records.hpp"
#include "store/work_records.hpp"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <vector>

namespace kpsd {

class StoreConnection;
class BrakeRoom;

class WorkQueue {
 public:
  WorkQueue(StoreConnection& connection, BrakeRoom& brakes);  // prepares its statements
  ~WorkQueue();
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  // Start-up: jobs left `running` go back to `queued` (or to `failed` once they have used
  // `max_attempts`); their open attempt rows are closed as "outcome lost". Returns how many
  // jobs were requeued or failed. Those failures count against their batch's failure budget,
  // in the same transaction: a batch they stopped is added to `stops` (when given).
  int recover_after_restart(std::int64_t now, std::int64_t max_attempts,
                            std::vector<BatchStop>* stops = nullptr);

  // retrying → queued for due jobs, then claims up to `limit` due queued jobs: each becomes
  // `running` with an open attempt row, all in one transaction. A replace-form job whose key is
  // gone fails instead, and counts against its batch's budget: a batch that stopped is added to
  // `stops` (when given).
  std::vector<DeliveryWork> claim_for_delivery(std::int64_t now, std::size_t limit,
                                               std::vector<BatchStop>* stops = nullptr);
  // Records how calls ended (and moves their jobs), in one transaction.
  void finish_attempts(std::span<const AttemptFinish> finished);

  // Claims up to `limit` delivered jobs due for a task poll; moves their next_attempt_at to
  // `lease_until` so a poll in flight is not started twice (and resumes after a crash).
  std::vector<PollWork> claim_for_poll(std::int64_t now, std::int64_t lease_until,
                                       std::size_t limit);
  // Records how polls ended (and moves their jobs), in one transaction.
  void finish_polls(std::span<const PollFinish> finished);

  // Records outcomes and claims what `next` asks for (polls first), in one transaction: one
  // fsync covers both, and the slots the outcomes free are filled without another round trip.
  Claimed finish_and_claim(std::span<const AttemptFinish> finished, const ClaimRequest& next);
  Claimed finish_and_claim(std::span<const PollFinish> finished, const ClaimRequest& next);

  // Earliest next_attempt_at over queued, retrying and delivered jobs (held jobs excluded);
  // nullopt when none is waiting.
  std::optional<std::int64_t> next_due_at();

 private:
  // The parts, inside the caller's transaction. The record_* return secrets deleted.
  int record_attempts(std::span<const AttemptFinish> finished);
  void update_job_after_attempt(const AttemptFinish& f);
  void record_without_call(const AttemptFinish& f);
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

  StoreConnection& connection_;
  BrakeRoom& brakes_;
  struct Statements;  // work_queue.cpp
  std::unique_ptr<Statements> sql_;
};

}  // namespace kpsd
