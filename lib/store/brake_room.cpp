// A batch's brakes: holding its jobs (migration 0009), its pause, the canary at enqueue, and the
// failure budget checked in each transaction of outcomes. See brake_room.hpp.
#include "store/brake_room.hpp"

#include "store/job_store.hpp"
#include "store/store_connection.hpp"

#include <set>

namespace kpsd {

namespace {

const std::string held_text = std::to_string(held_offset);

// Holds every queued and retrying job of the batch, but its own jobs up to ?4 (a running
// canary's first jobs; NULL: none).
std::string hold_sql() {
  return std::string(batch_members_cte) + "UPDATE jobs SET next_attempt_at = next_attempt_at + " +
         held_text +
         " WHERE id IN members AND state IN ('queued', 'retrying') AND next_attempt_at < " +
         held_text + " AND NOT (coalesce(batch_id = ?1, 0) AND id <= coalesce(?4, -1))";
}

// The same for the jobs the batch created with ids from ?2 to ?3 (one enqueue chunk: a range,
// not the whole batch, so a million-job enqueue stays linear).
std::string hold_range_sql() {
  return "UPDATE jobs SET next_attempt_at = next_attempt_at + " + held_text +
         " WHERE id BETWEEN ?2 AND ?3 AND batch_id = ?1 AND state IN ('queued', 'retrying') "
         "AND next_attempt_at < " +
         held_text + " AND id > coalesce(?4, -1)";
}

std::string hold_one_sql() {
  return "UPDATE jobs SET next_attempt_at = next_attempt_at + " + held_text +
         " WHERE id = ?1 AND state IN ('queued', 'retrying') AND next_attempt_at < " + held_text;
}

constexpr const char* brake_columns =
    "SELECT name, paused_reason, paused_detail, canary, canary_last_id, max_failures, "
    "max_failure_pct, ended - budget_ended_base AS budget_ended, "
    "failed - budget_failed_base AS budget_failed, coalesce(first_job_id, 1) AS first_id, "
    "coalesce(last_job_id, 0) AS last_id FROM batches WHERE id = ?1";

}  // namespace

BrakeRoom::RowColumns::RowColumns(const sql::Statement& s)
    : name(s.column_index("name")),
      reason(s.column_index("paused_reason")),
      detail(s.column_index("paused_detail")),
      canary(s.column_index("canary")),
      canary_last_id(s.column_index("canary_last_id")),
      max_failures(s.column_index("max_failures")),
      max_failure_pct(s.column_index("max_failure_pct")),
      ended(s.column_index("budget_ended")),
      failed(s.column_index("budget_failed")),
      first(s.column_index("first_id")),
      last(s.column_index("last_id")) {}

BrakeRoom::BrakeRoom(StoreConnection& connection)
    : connection_(connection),
      hold_(connection.db(), hold_sql()),
      hold_range_(connection.db(), hold_range_sql()),
      hold_one_(connection.db(), hold_one_sql()),
      set_pause_(connection.db(),
                 "UPDATE batches SET paused_reason = ?2, paused_at = ?3, paused_detail = ?4 "
                 "WHERE id = ?1"),
      brake_row_(connection.db(), brake_columns),
      batch_of_job_(connection.db(), "SELECT batch_id FROM jobs WHERE id = ?1"),
      canary_tally_(connection.db(),
                    "SELECT count(*) AS total, coalesce(sum(state IN ('queued','running',"
                    "'retrying','delivered')), 0) AS still_open, "
                    "coalesce(sum(state = 'succeeded'), 0) AS succeeded, "
                    "coalesce(sum(state = 'failed'), 0) AS failed FROM jobs "
                    "WHERE id BETWEEN ?2 AND ?3 AND batch_id = ?1"),
      nth_own_job_(connection.db(),
                   "SELECT id FROM jobs WHERE id BETWEEN ?2 AND ?3 AND batch_id = ?1 "
                   "ORDER BY id LIMIT 1 OFFSET ?4"),
      set_canary_last_(connection.db(), "UPDATE batches SET canary_last_id = ?2 WHERE id = ?1"),
      row_(brake_row_),
      tally_{canary_tally_.column_index("total"), canary_tally_.column_index("still_open"),
             canary_tally_.column_index("succeeded"), canary_tally_.column_index("failed")} {}

BrakeRoom::~BrakeRoom() = default;

std::optional<BatchBrakeRow> BrakeRoom::read_row(std::int64_t batch_id) {
  auto& s = brake_row_;
  s.bind(1, batch_id);
  if (!s.step()) {
    s.reset();
    return std::nullopt;
  }
  BatchBrakeRow r;
  r.name = s.column_optional_text(row_.name);
  if (auto reason = s.column_optional_text(row_.reason)) r.reason = parse_pause_reason(*reason);
  r.detail = s.column_optional_text(row_.detail);
  r.brakes.canary = s.column_optional_int(row_.canary);
  r.canary_last_id = s.column_optional_int(row_.canary_last_id);
  r.brakes.max_failures = s.column_optional_int(row_.max_failures);
  r.brakes.max_failure_pct = s.column_optional_double(row_.max_failure_pct);
  r.ended = s.column_int(row_.ended);
  r.failed = s.column_int(row_.failed);
  r.first = s.column_int(row_.first);
  r.last = s.column_int(row_.last);
  s.reset();
  return r;
}

std::int64_t BrakeRoom::hold_batch(std::int64_t batch_id,
                                   std::optional<std::int64_t> exempt_up_to) {
  auto [first, last] = connection_.batch_range(batch_id);
  hold_.bind(1, batch_id).bind(2, first).bind(3, last).bind(4, exempt_up_to).run();
  return connection_.db().changes();
}

void BrakeRoom::pause(std::int64_t batch_id, PauseReason reason,
                      const std::optional<std::string>& detail, std::int64_t now) {
  set_pause_.bind(1, batch_id).bind(2, to_string(reason)).bind(3, now).bind(4, detail).run();
}

void BrakeRoom::end_pause(std::int64_t batch_id) {
  set_pause_.bind(1, batch_id).bind(2, nullptr).bind(3, nullptr).bind(4, nullptr).run();
}

void BrakeRoom::hold_new_jobs(std::int64_t batch_id, std::int64_t chunk_first,
                              std::int64_t chunk_last, std::span<const std::int64_t> joined) {
  auto row = read_row(batch_id);
  if (!row || !row->reason) return;
  bool canary = row->reason == PauseReason::canary;
  if (canary && !row->canary_last_id) {
    // The canary's last job: the batch's Nth. Until it has N jobs, every one is a canary job.
    auto& nth = nth_own_job_;
    nth.bind(1, batch_id).bind(2, row->first).bind(3, row->last).bind(4, *row->brakes.canary - 1);
    std::optional<std::int64_t> last = nth.step() ? nth.column_optional_int(0) : std::nullopt;
    nth.reset();
    if (last) {
      set_canary_last_.bind(1, batch_id).bind(2, *last).run();
      row->canary_last_id = last;
      chunk_first = row->first;  // everything after it so far, earlier chunks' jobs too
    } else {
      chunk_last = chunk_first - 1;  // all of them are canary jobs so far
    }
  }
  std::optional<std::int64_t> exempt = canary ? row->canary_last_id : std::nullopt;
  if (chunk_first <= chunk_last) {
    hold_range_.bind(1, batch_id).bind(2, chunk_first).bind(3, chunk_last).bind(4, exempt).run();
  }
  // Jobs other batches had queued, named by this chunk: held by this batch too.
  for (std::int64_t id : joined) hold_one_.bind(1, id).run();
}

std::vector<BatchStop> BrakeRoom::apply(std::span<const std::int64_t> ended_jobs,
                                        std::int64_t now) {
  std::set<std::int64_t> batches;
  for (std::int64_t id : ended_jobs) {
    auto& s = batch_of_job_;
    s.bind(1, id);
    if (s.step() && !s.column_is_null(0)) batches.insert(s.column_int(0));
    s.reset();
  }
  std::vector<BatchStop> stops;
  for (std::int64_t batch_id : batches) {
    auto row = read_row(batch_id);
    if (!row) continue;
    if (auto stop = check(batch_id, *row, now)) stops.push_back(std::move(*stop));
  }
  return stops;
}

std::optional<BatchStop> BrakeRoom::check(std::int64_t batch_id, const BatchBrakeRow& row,
                                          std::int64_t now) {
  bool stopped = row.reason == PauseReason::failures || row.reason == PauseReason::operator_asked;
  if (!stopped) {
    if (auto line = failure_budget_spent(row.brakes, row.ended, row.failed)) {
      pause(batch_id, PauseReason::failures, *line, now);
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
  pause(batch_id, PauseReason::canary, line, now);
  return BatchStop{batch_id, row.name, PauseReason::canary, line};
}

CanaryTally BrakeRoom::canary_tally(const BatchBrakeRow& row, std::int64_t batch_id) {
  auto& t = canary_tally_;
  t.bind(1, batch_id).bind(2, row.first).bind(3, row.canary_last_id.value_or(0));
  t.step();  // an aggregate: always one row
  CanaryTally out{t.column_int(tally_.total), t.column_int(tally_.open),
                  t.column_int(tally_.succeeded), t.column_int(tally_.failed)};
  t.reset();
  return out;
}

bool BrakeRoom::canary_open(const BatchBrakeRow& row, std::int64_t batch_id) {
  return canary_tally(row, batch_id).open > 0;
}

}  // namespace kpsd
