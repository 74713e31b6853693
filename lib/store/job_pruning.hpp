#pragma once
// Deleting finished jobs from the database, a chunk at a time: what `kpsctl prune` and the
// hourly retention (store/pruning.hpp) run. Times are Unix ms; every operation throws sql::Error
// when the database fails (nothing of it is then committed). Used on the DB thread only
// (DbWorker::call with a `Pruning&` parameter).
#include "model/job.hpp"
#include "model/job_records.hpp"

#include <cstdint>
#include <map>
#include <memory>
#include <utility>

namespace kpsd {

namespace sql {
class Statement;
}
class StoreConnection;

class Pruning {
 public:
  explicit Pruning(StoreConnection& connection);  // prepares its statements
  ~Pruning();
  Pruning(const Pruning&) = delete;
  Pruning& operator=(const Pruning&) = delete;

  // Deletes up to `limit` finished jobs (succeeded, failed, cancelled) that ended before
  // `before` (and match `filter`), with their attempts and batch memberships, and the batches
  // left with no job: one transaction. Returns the jobs deleted (0: nothing older is left).
  std::int64_t prune_finished(std::int64_t before, std::int64_t limit,
                              const PruneFilter& filter = {});
  // What prune_finished would delete: finished jobs per (batch, state); batch 0 for jobs of no
  // batch. A dry run reads, and deletes nothing.
  std::map<std::pair<std::int64_t, JobState>, std::int64_t> count_prunable(
      std::int64_t before, const PruneFilter& filter = {});

 private:
  struct Statements;  // job_pruning.cpp
  // ?1 before, ?3 state, ?4..?6 batch and its id range (the prune statements' parameters).
  void bind_filter(sql::Statement& s, std::int64_t before, const PruneFilter& filter);

  StoreConnection& connection_;
  std::unique_ptr<Statements> sql_;
};

}  // namespace kpsd
