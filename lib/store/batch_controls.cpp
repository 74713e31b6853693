// The operator's controls over a batch (pause, resume, cancel, retry) and kpsd's own pause.
// See batch_controls.hpp; the brakes themselves are in brake_room.cpp.
#include "store/batch_controls.hpp"

#include "store/brake_room.hpp"
#include "store/job_retry.hpp"
#include "store/job_store.hpp"
#include "store/sqlite.hpp"
#include "store/store_connection.hpp"

#include <string>

namespace kpsd {

namespace {

const std::string released_offset = std::to_string(held_offset);

// Gives back the batch's held jobs, but those another paused batch still holds (as the
// jobs_hold trigger decides it: a canary does not hold its own first jobs).
std::string release_sql() {
  return std::string(batch_members_cte) + "UPDATE jobs SET next_attempt_at = next_attempt_at - " +
         released_offset +
         " WHERE id IN members AND state IN ('queued', 'retrying') AND next_attempt_at >= " +
         released_offset +
         " AND NOT EXISTS (SELECT 1 FROM batches b WHERE b.id = jobs.batch_id "
         "AND b.paused_reason IS NOT NULL AND NOT (b.paused_reason = 'canary' "
         "AND jobs.id <= coalesce(b.canary_last_id, jobs.id))) "
         "AND NOT EXISTS (SELECT 1 FROM batch_jobs bj JOIN "
         "batches b ON b.id = bj.batch_id WHERE bj.job_id = jobs.id AND b.paused_reason IS NOT "
         "NULL)";
}

}  // namespace

struct BatchControls::Statements {
  explicit Statements(sql::Database& db)
      : release(db, release_sql()),
        reset_budget(db,
                     "UPDATE batches SET budget_ended_base = ended, budget_failed_base = failed "
                     "WHERE id = ?1"),
        cancel_members(db, std::string(batch_members_cte) +
                               "UPDATE jobs SET state = 'cancelled', updated_at = ?4, "
                               "error_msg = 'cancelled by the operator (batch)' WHERE id IN "
                               "members AND state IN ('queued','running','retrying','delivered') "
                               "RETURNING id"),
        members_in_state(db, std::string(batch_members_cte) +
                                 "SELECT id FROM jobs WHERE id IN members AND state = ?4 "
                                 "ORDER BY id"),
        get_setting(db, "SELECT value FROM settings WHERE key = ?1"),
        put_setting(db,
                    "INSERT INTO settings (key, value) VALUES (?1, ?2) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"),
        retry(db) {}
  sql::Statement release, reset_budget, cancel_members, members_in_state, get_setting, put_setting;
  JobRetry retry;
};

BatchControls::BatchControls(StoreConnection& connection, BrakeRoom& brakes)
    : connection_(connection),
      brakes_(brakes),
      sql_(std::make_unique<Statements>(connection.db())) {}

BatchControls::~BatchControls() = default;

BatchChange BatchControls::pause_batch(std::int64_t batch_id, std::int64_t now) {
  sql::Transaction tx(connection_.db());
  auto row = brakes_.read_row(batch_id);
  if (!row) return BatchChange{false, 0, false};
  // A batch that stopped itself (a spent budget, a finished canary) keeps its reason and detail:
  // they say why it stopped, and a resume ends either pause alike.
  bool stopped = row->reason == PauseReason::operator_asked ||
                 row->reason == PauseReason::failures ||
                 (row->reason == PauseReason::canary && row->detail);
  // The operator's pause holds every job, a running canary's first ones too.
  if (!stopped) brakes_.pause(batch_id, PauseReason::operator_asked, std::nullopt, now);
  std::int64_t jobs = brakes_.hold_batch(batch_id, std::nullopt);
  tx.commit();
  return BatchChange{true, jobs, !stopped};
}

BatchChange BatchControls::resume_batch(std::int64_t batch_id, std::int64_t now) {
  sql::Transaction tx(connection_.db());
  auto row = brakes_.read_row(batch_id);
  if (!row) return BatchChange{false, 0, false};
  // The operator's pause during a canary gives way to the canary again: its first jobs run, the
  // rest still waits for a resume of the canary itself.
  bool canary_unfinished = row->reason == PauseReason::operator_asked && row->canary_last_id &&
                           brakes_.canary_open(*row, batch_id);
  if (canary_unfinished) {
    brakes_.pause(batch_id, PauseReason::canary, std::nullopt, now);
  } else {
    // The batch row first: the jobs_hold trigger would park again what is given back.
    brakes_.end_pause(batch_id);
    // A resumed batch's failure budget counts afresh (the failures that spent it are behind).
    sql_->reset_budget.bind(1, batch_id).run();
  }
  auto [first, last] = connection_.batch_range(batch_id);
  sql_->release.bind(1, batch_id).bind(2, first).bind(3, last).run();
  std::int64_t jobs = connection_.db().changes();
  tx.commit();
  return BatchChange{true, jobs, row->reason.has_value()};
}

BatchChange BatchControls::cancel_batch(std::int64_t batch_id, std::int64_t now) {
  sql::Transaction tx(connection_.db());
  auto row = brakes_.read_row(batch_id);
  if (!row) return BatchChange{false, 0, false};
  std::vector<std::int64_t> ids;
  auto& c = sql_->cancel_members;
  c.bind(1, batch_id).bind(2, row->first).bind(3, row->last).bind(4, now);
  while (c.step()) ids.push_back(c.column_int(0));
  c.reset();
  connection_.note_ended(JobState::cancelled, static_cast<std::int64_t>(ids.size()));
  int deleted = 0;
  for (std::int64_t id : ids)
    deleted += connection_.delete_secret(id);  // a terminal job keeps no key
  brakes_.apply(ids, now);  // other batches' canaries may have ended with their jobs
  // Nothing is left to hold: a cancelled batch is no longer paused (stats, kpsd_batches_paused);
  // a later retry --batch runs its jobs, its failure budget still counting.
  brakes_.end_pause(batch_id);
  tx.commit();
  if (deleted) connection_.scrub_wal();
  return BatchChange{true, static_cast<std::int64_t>(ids.size()),
                     !ids.empty() || row->reason.has_value()};
}

std::vector<std::int64_t> BatchControls::batch_members(std::int64_t batch_id, JobState state) {
  auto [first, last] = connection_.batch_range(batch_id);
  std::vector<std::int64_t> ids;
  auto& s = sql_->members_in_state;
  s.bind(1, batch_id).bind(2, first).bind(3, last).bind(4, to_string(state));
  while (s.step()) ids.push_back(s.column_int(0));
  s.reset();
  return ids;
}

std::map<RetryOutcome, std::int64_t> BatchControls::retry_batch(std::int64_t batch_id,
                                                                JobState state, std::int64_t now) {
  std::map<RetryOutcome, std::int64_t> counts;
  sql::Transaction tx(connection_.db());
  for (std::int64_t id : batch_members(batch_id, state)) {
    ++counts[sql_->retry.retry_one(id, now, nullptr)];
  }
  tx.commit();
  return counts;
}

bool BatchControls::paused() {
  auto& g = sql_->get_setting;
  g.bind(1, std::string_view("paused"));
  bool p = g.step() && g.column_text(0) == "true";
  g.reset();
  return p;
}

void BatchControls::set_paused(bool paused) {
  sql::Transaction tx(connection_.db());
  sql_->put_setting.bind(1, std::string_view("paused"))
      .bind(2, std::string_view(paused ? "true" : "false"))
      .run();
  tx.commit();
}

}  // namespace kpsd
