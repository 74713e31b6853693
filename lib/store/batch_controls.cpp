// A batch's brakes and bulk controls: pause and resume (holding its jobs, migration 0009),
// cancel, the canary at enqueue, and the failure budget checked in each transaction of outcomes.
// See job_store_rooms.hpp.
#include "store/job_store.hpp"
#include "store/job_store_rooms.hpp"

#include <set>

namespace kpsd {

namespace {

// The batch's jobs, as `kpsctl list --batch` shows them: those it created (a rowid range, see
// 0006) and those it named that other batches had queued (batch_jobs). ?1 batch, ?2 and ?3 its
// first and last job id.
constexpr const char* members =
    "WITH members(id) AS (SELECT id FROM jobs WHERE id BETWEEN ?2 AND ?3 AND batch_id = ?1 "
    "UNION SELECT job_id FROM batch_jobs WHERE batch_id = ?1) ";

const std::string held = std::to_string(held_offset);

// Holds every queued and retrying job of the batch, but its own jobs up to ?4 (a running
// canary's first jobs; NULL: none).
std::string hold_sql() {
  return std::string(members) + "UPDATE jobs SET next_attempt_at = next_attempt_at + " + held +
         " WHERE id IN members AND state IN ('queued', 'retrying') AND next_attempt_at < " + held +
         " AND NOT (coalesce(batch_id = ?1, 0) AND id <= coalesce(?4, -1))";
}

// The same for the jobs the batch created with ids from ?2 to ?3 (one enqueue chunk: a range,
// not the whole batch, so a million-job enqueue stays linear).
std::string hold_range_sql() {
  return "UPDATE jobs SET next_attempt_at = next_attempt_at + " + held +
         " WHERE id BETWEEN ?2 AND ?3 AND batch_id = ?1 AND state IN ('queued', 'retrying') "
         "AND next_attempt_at < " +
         held + " AND id > coalesce(?4, -1)";
}

std::string hold_one_sql() {
  return "UPDATE jobs SET next_attempt_at = next_attempt_at + " + held +
         " WHERE id = ?1 AND state IN ('queued', 'retrying') AND next_attempt_at < " + held;
}

// Gives back the batch's held jobs, but those another paused batch still holds (as the
// jobs_hold trigger decides it: a canary does not hold its own first jobs).
std::string release_sql() {
  return std::string(members) + "UPDATE jobs SET next_attempt_at = next_attempt_at - " + held +
         " WHERE id IN members AND state IN ('queued', 'retrying') AND next_attempt_at >= " + held +
         " AND NOT EXISTS (SELECT 1 FROM batches b WHERE b.id = jobs.batch_id "
         "AND b.paused_reason IS NOT NULL AND NOT (b.paused_reason = 'canary' "
         "AND jobs.id <= coalesce(b.canary_last_id, jobs.id))) "
         "AND NOT EXISTS (SELECT 1 FROM batch_jobs bj JOIN "
         "batches b ON b.id = bj.batch_id WHERE bj.job_id = jobs.id AND b.paused_reason IS NOT "
         "NULL)";
}

constexpr const char* brake_columns =
    "SELECT name, paused_reason, paused_detail, canary, canary_last_id, max_failures, "
    "max_failure_pct, ended - budget_ended_base, failed - budget_failed_base, "
    "coalesce(first_job_id, 1), coalesce(last_job_id, 0) FROM batches WHERE id = ?1";

}  // namespace

JobStore::BatchRoom::BatchRoom(sql::Database& db)
    : hold(db, hold_sql()),
      hold_range(db, hold_range_sql()),
      hold_one(db, hold_one_sql()),
      release(db, release_sql()),
      reset_budget(db,
                   "UPDATE batches SET budget_ended_base = ended, budget_failed_base = failed "
                   "WHERE id = ?1"),
      set_pause(db,
                "UPDATE batches SET paused_reason = ?2, paused_at = ?3, paused_detail = ?4 "
                "WHERE id = ?1"),
      brake_row(db, brake_columns),
      batch_of_job(db, "SELECT batch_id FROM jobs WHERE id = ?1"),
      canary_tally(db,
                   "SELECT count(*), coalesce(sum(state IN ('queued','running','retrying',"
                   "'delivered')), 0), coalesce(sum(state = 'succeeded'), 0), "
                   "coalesce(sum(state = 'failed'), 0) FROM jobs "
                   "WHERE id BETWEEN ?2 AND ?3 AND batch_id = ?1"),
      nth_own_job(db,
                  "SELECT id FROM jobs WHERE id BETWEEN ?2 AND ?3 AND batch_id = ?1 "
                  "ORDER BY id LIMIT 1 OFFSET ?4"),
      set_canary_last(db, "UPDATE batches SET canary_last_id = ?2 WHERE id = ?1"),
      cancel_members(db, std::string(members) +
                             "UPDATE jobs SET state = 'cancelled', updated_at = ?4, "
                             "error_msg = 'cancelled by the operator (batch)' WHERE id IN members "
                             "AND state IN ('queued','running','retrying','delivered') "
                             "RETURNING id"),
      members_in_state(db, std::string(members) +
                               "SELECT id FROM jobs WHERE id IN members AND state = ?4 "
                               "ORDER BY id") {}

namespace {

std::optional<BatchBrakeRow> read_brake_row(sql::Statement& s, std::int64_t batch_id) {
  s.bind(1, batch_id);
  if (!s.step()) {
    s.reset();
    return std::nullopt;
  }
  BatchBrakeRow r;
  r.name = s.column_optional_text(0);
  if (auto reason = s.column_optional_text(1)) r.reason = parse_pause_reason(*reason);
  r.detail = s.column_optional_text(2);
  r.brakes.canary = s.column_optional_int(3);
  r.canary_last_id = s.column_optional_int(4);
  r.brakes.max_failures = s.column_optional_int(5);
  r.brakes.max_failure_pct = s.column_optional_double(6);
  r.ended = s.column_int(7);
  r.failed = s.column_int(8);
  r.first = s.column_int(9);
  r.last = s.column_int(10);
  s.reset();
  return r;
}

}  // namespace

std::int64_t JobStore::hold_batch(std::int64_t batch_id, std::optional<std::int64_t> exempt_up_to) {
  auto [first, last] = batch_range(batch_id);
  batches_->hold.bind(1, batch_id).bind(2, first).bind(3, last).bind(4, exempt_up_to).run();
  return db_->changes();
}

void JobStore::pause_in_tx(std::int64_t batch_id, PauseReason reason,
                           const std::optional<std::string>& detail, std::int64_t now) {
  batches_->set_pause.bind(1, batch_id)
      .bind(2, to_string(reason))
      .bind(3, now)
      .bind(4, detail)
      .run();
}

void JobStore::end_pause_in_tx(std::int64_t batch_id) {
  batches_->set_pause.bind(1, batch_id).bind(2, nullptr).bind(3, nullptr).bind(4, nullptr).run();
}

BatchChange JobStore::pause_batch(std::int64_t batch_id, std::int64_t now) {
  sql::Transaction tx(*db_);
  auto row = read_brake_row(batches_->brake_row, batch_id);
  if (!row) return BatchChange{false, 0, false};
  // A batch that stopped itself (a spent budget, a finished canary) keeps its reason and detail:
  // they say why it stopped, and a resume ends either pause alike.
  bool stopped = row->reason == PauseReason::operator_asked ||
                 row->reason == PauseReason::failures ||
                 (row->reason == PauseReason::canary && row->detail);
  // The operator's pause holds every job, a running canary's first ones too.
  if (!stopped) pause_in_tx(batch_id, PauseReason::operator_asked, std::nullopt, now);
  std::int64_t jobs = hold_batch(batch_id, std::nullopt);
  tx.commit();
  return BatchChange{true, jobs, !stopped};
}

BatchChange JobStore::resume_batch(std::int64_t batch_id, std::int64_t now) {
  sql::Transaction tx(*db_);
  auto row = read_brake_row(batches_->brake_row, batch_id);
  if (!row) return BatchChange{false, 0, false};
  // The operator's pause during a canary gives way to the canary again: its first jobs run, the
  // rest still waits for a resume of the canary itself.
  bool canary_unfinished = row->reason == PauseReason::operator_asked && row->canary_last_id &&
                           canary_open(*row, batch_id);
  if (canary_unfinished) {
    pause_in_tx(batch_id, PauseReason::canary, std::nullopt, now);
  } else {
    // The batch row first: the jobs_hold trigger would park again what is given back.
    end_pause_in_tx(batch_id);
    // A resumed batch's failure budget counts afresh (the failures that spent it are behind).
    batches_->reset_budget.bind(1, batch_id).run();
  }
  auto [first, last] = batch_range(batch_id);
  batches_->release.bind(1, batch_id).bind(2, first).bind(3, last).run();
  std::int64_t jobs = db_->changes();
  tx.commit();
  return BatchChange{true, jobs, row->reason.has_value()};
}

BatchChange JobStore::cancel_batch(std::int64_t batch_id, std::int64_t now) {
  sql::Transaction tx(*db_);
  auto row = read_brake_row(batches_->brake_row, batch_id);
  if (!row) return BatchChange{false, 0, false};
  std::vector<std::int64_t> ids;
  auto& c = batches_->cancel_members;
  c.bind(1, batch_id).bind(2, row->first).bind(3, row->last).bind(4, now);
  while (c.step()) ids.push_back(c.column_int(0));
  c.reset();
  note_ended(JobState::cancelled, static_cast<std::int64_t>(ids.size()));
  int deleted = 0;
  for (std::int64_t id : ids) deleted += delete_secret(id);  // a terminal job keeps no key
  apply_brakes(ids, now);  // other batches' canaries may have ended with their jobs
  // Nothing is left to hold: a cancelled batch is no longer paused (stats, kpsd_batches_paused);
  // a later retry --batch runs its jobs, its failure budget still counting.
  end_pause_in_tx(batch_id);
  tx.commit();
  if (deleted) scrub_wal();
  return BatchChange{true, static_cast<std::int64_t>(ids.size()),
                     !ids.empty() || row->reason.has_value()};
}

std::vector<std::int64_t> JobStore::batch_members(std::int64_t batch_id, JobState state) {
  auto [first, last] = batch_range(batch_id);
  std::vector<std::int64_t> ids;
  auto& s = batches_->members_in_state;
  s.bind(1, batch_id).bind(2, first).bind(3, last).bind(4, to_string(state));
  while (s.step()) ids.push_back(s.column_int(0));
  s.reset();
  return ids;
}

void JobStore::hold_new_jobs(std::int64_t batch_id, std::int64_t chunk_first,
                             std::int64_t chunk_last, std::span<const std::int64_t> joined) {
  auto row = read_brake_row(batches_->brake_row, batch_id);
  if (!row || !row->reason) return;
  bool canary = row->reason == PauseReason::canary;
  if (canary && !row->canary_last_id) {
    // The canary's last job: the batch's Nth. Until it has N jobs, every one is a canary job.
    auto& nth = batches_->nth_own_job;
    nth.bind(1, batch_id).bind(2, row->first).bind(3, row->last).bind(4, *row->brakes.canary - 1);
    std::optional<std::int64_t> last = nth.step() ? nth.column_optional_int(0) : std::nullopt;
    nth.reset();
    if (last) {
      batches_->set_canary_last.bind(1, batch_id).bind(2, *last).run();
      row->canary_last_id = last;
      chunk_first = row->first;  // everything after it so far, earlier chunks' jobs too
    } else {
      chunk_last = chunk_first - 1;  // all of them are canary jobs so far
    }
  }
  std::optional<std::int64_t> exempt = canary ? row->canary_last_id : std::nullopt;
  if (chunk_first <= chunk_last) {
    batches_->hold_range.bind(1, batch_id)
        .bind(2, chunk_first)
        .bind(3, chunk_last)
        .bind(4, exempt)
        .run();
  }
  // Jobs other batches had queued, named by this chunk: held by this batch too.
  for (std::int64_t id : joined) batches_->hold_one.bind(1, id).run();
}

std::vector<BatchStop> JobStore::apply_brakes(std::span<const std::int64_t> ended_jobs,
                                              std::int64_t now) {
  std::set<std::int64_t> batches;
  for (std::int64_t id : ended_jobs) {
    auto& s = batches_->batch_of_job;
    s.bind(1, id);
    if (s.step() && !s.column_is_null(0)) batches.insert(s.column_int(0));
    s.reset();
  }
  std::vector<BatchStop> stops;
  for (std::int64_t batch_id : batches) {
    auto row = read_brake_row(batches_->brake_row, batch_id);
    if (!row) continue;
    if (auto stop = check_brakes(batch_id, *row, now)) stops.push_back(std::move(*stop));
  }
  return stops;
}

std::optional<BatchStop> JobStore::check_brakes(std::int64_t batch_id, const BatchBrakeRow& row,
                                                std::int64_t now) {
  bool stopped = row.reason == PauseReason::failures || row.reason == PauseReason::operator_asked;
  if (!stopped) {
    if (auto line = failure_budget_spent(row.brakes, row.ended, row.failed)) {
      pause_in_tx(batch_id, PauseReason::failures, *line, now);
      hold_batch(batch_id, std::nullopt);
      return BatchStop{batch_id, row.name, PauseReason::failures, *line};
    }
  }
  if (row.reason != PauseReason::canary || row.detail || !row.canary_last_id) return std::nullopt;
  auto tally = canary_tally(row, batch_id);
  if (tally.open > 0) return std::nullopt;
  std::int64_t total = tally.total, ok = tally.succeeded, failed = tally.failed;
  std::string line = "canary done: its first " +
                     (total == 1 ? std::string("job") : std::to_string(total) + " jobs") +
                     " ended (" + std::to_string(ok) + " succeeded, " + std::to_string(failed) +
                     " failed); the others wait for kpsctl resume --batch " +
                     std::to_string(batch_id);
  pause_in_tx(batch_id, PauseReason::canary, line, now);
  return BatchStop{batch_id, row.name, PauseReason::canary, line};
}

CanaryTally JobStore::canary_tally(const BatchBrakeRow& row, std::int64_t batch_id) {
  auto& t = batches_->canary_tally;
  t.bind(1, batch_id).bind(2, row.first).bind(3, row.canary_last_id.value_or(0));
  t.step();  // an aggregate: always one row
  CanaryTally out{t.column_int(0), t.column_int(1), t.column_int(2), t.column_int(3)};
  t.reset();
  return out;
}

bool JobStore::canary_open(const BatchBrakeRow& row, std::int64_t batch_id) {
  return canary_tally(row, batch_id).open > 0;
}

}  // namespace kpsd
