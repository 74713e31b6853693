// Deleting finished jobs, a chunk per transaction. See job_pruning.hpp.
#include "store/job_pruning.hpp"

#include "store/sqlite.hpp"
#include "store/store_connection.hpp"

#include <vector>

namespace kpsd {

struct Pruning::Statements {
  explicit Statements(sql::Database& db)
      // In id order through jobs_state: the oldest jobs have the lowest ids, so a chunk is
      // found near the start of each state's range. There is no index on the end time: it
      // would cost every job an index write as it ends (a quarter of the raw throughput).
      // ?3 a state, ?4 a batch and ?5..?6 its id range (0006): each NULL when not filtered.
      : select_prunable(db,
                        "SELECT id FROM jobs WHERE state IN ('succeeded','failed','cancelled') "
                        "AND updated_at < ?1 AND (?3 IS NULL OR state = ?3) AND (?4 IS NULL OR "
                        "(id BETWEEN ?5 AND ?6 AND batch_id = ?4)) LIMIT ?2"),
        count_prunable(
            db,
            "SELECT coalesce(batch_id, 0) AS batch_key, state, count(*) AS finished FROM jobs "
            "WHERE state IN ('succeeded','failed','cancelled') AND updated_at < ?1 "
            "AND (?3 IS NULL OR state = ?3) AND (?4 IS NULL OR "
            "(id BETWEEN ?5 AND ?6 AND batch_id = ?4)) GROUP BY 1, 2"),
        delete_job(db, "DELETE FROM jobs WHERE id = ?1"),
        delete_empty_batches(db,
                             "DELETE FROM batches WHERE created_at < ?1 AND NOT EXISTS "
                             "(SELECT 1 FROM jobs j WHERE j.id BETWEEN batches.first_job_id AND "
                             "batches.last_job_id AND j.batch_id = batches.id) AND NOT EXISTS "
                             "(SELECT 1 FROM batch_jobs b WHERE b.batch_id = batches.id)"),
        count_batch_column(count_prunable.column_index("batch_key")),
        count_state_column(count_prunable.column_index("state")),
        count_jobs_column(count_prunable.column_index("finished")) {}
  sql::Statement select_prunable, count_prunable, delete_job, delete_empty_batches;
  int count_batch_column, count_state_column, count_jobs_column;
};

Pruning::Pruning(StoreConnection& connection)
    : connection_(connection), sql_(std::make_unique<Statements>(connection.db())) {}

Pruning::~Pruning() = default;

void Pruning::bind_filter(sql::Statement& s, std::int64_t before, const PruneFilter& filter) {
  s.bind(1, before);
  if (filter.state) s.bind(3, to_string(*filter.state));
  if (filter.batch_id) {
    auto [first, last] = connection_.batch_range(*filter.batch_id);
    s.bind(4, *filter.batch_id).bind(5, first).bind(6, last);
  }
}

std::map<std::pair<std::int64_t, JobState>, std::int64_t> Pruning::count_prunable(
    std::int64_t before, const PruneFilter& filter) {
  std::map<std::pair<std::int64_t, JobState>, std::int64_t> out;
  sql::Transaction tx(connection_.db(), sql::Transaction::Kind::deferred);
  auto& s = sql_->count_prunable;
  bind_filter(s, before, filter);
  while (s.step()) {
    if (auto state = parse_job_state(s.column_text(sql_->count_state_column))) {
      out[{s.column_int(sql_->count_batch_column), *state}] = s.column_int(sql_->count_jobs_column);
    }
  }
  s.reset();
  tx.commit();
  return out;
}

std::int64_t Pruning::prune_finished(std::int64_t before, std::int64_t limit,
                                     const PruneFilter& filter) {
  sql::Transaction tx(connection_.db());
  std::vector<std::int64_t> ids;
  auto& sel = sql_->select_prunable;
  bind_filter(sel, before, filter);
  sel.bind(2, limit);
  while (sel.step()) ids.push_back(sel.column_int(0));
  sel.reset();
  for (std::int64_t id : ids) sql_->delete_job.bind(1, id).run();
  sql_->delete_empty_batches.bind(1, before).run();
  tx.commit();
  return static_cast<std::int64_t>(ids.size());
}

}  // namespace kpsd
