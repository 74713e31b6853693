// Reads: a page of jobs, a job with its attempts, batches, counts, and the cheap questions a
// waiting kpsctl asks. See job_queries.hpp.
#include "store/job_queries.hpp"

#include "store/job_queries_sql.hpp"
#include "store/job_store.hpp"
#include "store/sqlite.hpp"
#include "store/store_connection.hpp"

namespace kpsd {

namespace {

using query_rows::AttemptColumns;
using query_rows::batch_columns;
using query_rows::BatchColumns;
using query_rows::job_columns;
using query_rows::JobColumns;

Job read_job(const sql::Statement& s, const JobColumns& c) {
  Job j;
  j.id = s.column_int(c.id);
  j.server_id = s.column_text(c.server_id);
  // The CHECK constraint keeps state valid; fall back rather than crash if it was dropped.
  j.state = parse_job_state(s.column_text(c.state)).value_or(JobState::failed);
  j.attempts = s.column_int(c.attempts);
  j.next_attempt_at = s.column_int(c.next_attempt_at);
  if (j.next_attempt_at >= held_offset) {  // parked by a paused batch (0009)
    j.held = j.state == JobState::queued || j.state == JobState::retrying;
    j.next_attempt_at -= held_offset;  // a job cancelled while held keeps the offset
  }
  j.task_id = s.column_optional_text(c.task_id);
  j.delivery_status = s.column_optional_text(c.delivery_status);
  j.task_status = s.column_optional_text(c.task_status);
  j.error_code = s.column_optional_text(c.error_code);
  j.error_msg = s.column_optional_text(c.error_msg);
  j.created_at = s.column_int(c.created_at);
  j.updated_at = s.column_int(c.updated_at);
  j.port = s.column_optional_int(c.port);
  j.auth_type = s.column_optional_text(c.auth_type);
  j.task_error_code = s.column_optional_text(c.task_error_code);
  j.task_error_msg = s.column_optional_text(c.task_error_msg);
  j.task_failures = s.column_int(c.task_failures);
  j.maybe_done = s.column_int(c.maybe_done) != 0;
  return j;
}

// The first column of a query that answers with at most one row; nullopt for no row or NULL.
std::optional<std::int64_t> single_int(sql::Statement& s) {
  std::optional<std::int64_t> v = s.step() ? s.column_optional_int(0) : std::nullopt;
  s.reset();
  return v;
}

// A row of batch_columns, its counts per state not yet made.
Batch read_batch(const sql::Statement& s, const BatchColumns& c) {
  Batch b;
  b.id = s.column_int(c.id);
  b.name = s.column_optional_text(c.name);
  b.created_at = s.column_int(c.created_at);
  if (auto reason = s.column_optional_text(c.paused_reason)) b.paused = parse_pause_reason(*reason);
  b.paused_at = s.column_int(c.paused_at);
  b.paused_detail = s.column_optional_text(c.paused_detail);
  b.brakes.canary = s.column_optional_int(c.canary);
  b.brakes.max_failures = s.column_optional_int(c.max_failures);
  b.brakes.max_failure_pct = s.column_optional_double(c.max_failure_pct);
  b.ended = s.column_int(c.ended);
  b.failed = s.column_int(c.failed);
  return b;
}

// Rows of (state, count) added into a map that starts at 0 for every state.
std::map<JobState, std::int64_t> read_state_counts(sql::Statement& s) {
  std::map<JobState, std::int64_t> counts;
  for (JobState state : all_job_states) counts[state] = 0;
  while (s.step()) {
    if (auto state = parse_job_state(s.column_text(0))) counts[*state] += s.column_int(1);
  }
  s.reset();
  return counts;
}

// Runs a query that answers with at most one row; true if it did.
bool has_row(sql::Statement& s) {
  bool found = s.step();
  s.reset();
  return found;
}

}  // namespace

struct JobQueries::Statements {
  explicit Statements(sql::Database& db)
      : find_job(db, std::string("SELECT ") + job_columns + " FROM jobs WHERE id = ?1"),
        // One statement per filter, so each can walk its own index in id order.
        list_jobs(db, std::string("SELECT ") + job_columns +
                          " FROM jobs WHERE id > ?1 ORDER BY id LIMIT ?4"),
        list_jobs_by_state(db, std::string("SELECT ") + job_columns +
                                   " FROM jobs WHERE state = ?2 AND id > ?1 "
                                   "AND (?8 = 0 OR maybe_done = 1) ORDER BY id LIMIT ?4"),
        list_jobs_by_server(db, std::string("SELECT ") + job_columns +
                                    " FROM jobs WHERE server_id = ?3 AND id > ?1 "
                                    "AND (?2 IS NULL OR state = ?2) AND (?8 = 0 OR maybe_done = 1) "
                                    "ORDER BY id LIMIT ?4"),
        // The jobs it created (a rowid range) merged in id order with those that joined it, so
        // a page of a million-job batch is a short walk, not a sort.
        list_jobs_by_batch(
            db, std::string("SELECT ") + job_columns +
                    " FROM jobs WHERE id > ?1 AND id BETWEEN ?6 AND ?7 AND batch_id = ?5 "
                    "AND (?2 IS NULL OR state = ?2) AND (?3 IS NULL OR server_id = ?3) "
                    "AND (?8 = 0 OR maybe_done = 1) UNION ALL SELECT " +
                    job_columns +
                    " FROM jobs WHERE id IN (SELECT job_id FROM batch_jobs WHERE batch_id = ?5 "
                    "AND job_id > ?1) AND (?2 IS NULL OR state = ?2) "
                    "AND (?3 IS NULL OR server_id = ?3) AND (?8 = 0 OR maybe_done = 1) "
                    "ORDER BY 1 LIMIT ?4"),
        list_attempts(db,
                      "SELECT job_id, n, started_at, finished_at, http_status, task_id, "
                      "delivery_status, error_code, error_msg, request_id, latency_ms, look "
                      "FROM attempts WHERE job_id = ?1 ORDER BY n"),
        count_states(db, "SELECT state, n FROM job_counts"),
        last_request_id(db,
                        "SELECT request_id FROM attempts WHERE job_id = ?1 "
                        "AND request_id IS NOT NULL ORDER BY n DESC LIMIT 1"),
        oldest_queued(db,
                      "SELECT min(next_attempt_at) FROM jobs WHERE state = 'queued' "
                      "AND next_attempt_at < " +
                          std::to_string(held_offset)),
        batch_by_id(db, std::string(batch_columns) + "WHERE id = ?1"),
        batch_by_name(db, std::string(batch_columns) + "WHERE name = ?1"),
        recent_batches(db, std::string(batch_columns) + "ORDER BY id DESC LIMIT ?1"),
        // Read on every overview, metrics scrape and STATUS=: one indexed query, whatever their
        // number.
        paused_batches(db,
                       std::string(batch_columns) +
                           "INDEXED BY batches_paused WHERE paused_reason IS NOT NULL ORDER BY id"),
        // The jobs it created, then those that joined it.
        count_batch(db,
                    "SELECT state, count(*) FROM jobs WHERE id BETWEEN ?2 AND ?3 AND batch_id = ?1 "
                    "GROUP BY state UNION ALL "
                    "SELECT j.state, count(*) FROM batch_jobs b JOIN jobs j ON j.id = b.job_id "
                    "WHERE b.batch_id = ?1 GROUP BY j.state"),
        // A bare wait's jobs lie between the lowest unfinished id and the highest id when it
        // started: a rowid range, however many older jobs the database holds.
        count_unfinished_since(
            db,
            "SELECT state, count(*) FROM jobs WHERE id BETWEEN ?1 AND ?2 AND (state IN "
            "('queued','running','retrying','delivered') OR updated_at >= ?3) GROUP BY state"),
        max_job_id(db, "SELECT coalesce(max(id), 0) FROM jobs"),
        // Whether any job in an id range is unfinished: a seek per state in jobs_state, however
        // many jobs the range holds (a waiting kpsctl asks this every 200 ms).
        unfinished_between(db,
                           "SELECT 1 FROM jobs INDEXED BY jobs_state WHERE state IN "
                           "('queued','running','retrying','delivered') "
                           "AND id BETWEEN ?1 AND ?2 AND (?3 IS NULL OR batch_id = ?3) LIMIT 1"),
        joined_unfinished(db,
                          "SELECT 1 FROM batch_jobs b JOIN jobs j ON j.id = b.job_id "
                          "WHERE b.batch_id = ?1 AND j.state IN "
                          "('queued','running','retrying','delivered') LIMIT 1"),
        // Each state's lowest id is the first entry of its jobs_state range.
        min_unfinished_id(db,
                          "SELECT min(m) FROM ("
                          "SELECT min(id) AS m FROM jobs WHERE state = 'queued' UNION ALL "
                          "SELECT min(id) FROM jobs WHERE state = 'running' UNION ALL "
                          "SELECT min(id) FROM jobs WHERE state = 'retrying' UNION ALL "
                          "SELECT min(id) FROM jobs WHERE state = 'delivered')"),
        find_job_columns(find_job),
        list_columns(list_jobs),
        list_by_state_columns(list_jobs_by_state),
        list_by_server_columns(list_jobs_by_server),
        list_by_batch_columns(list_jobs_by_batch),
        batch_by_id_columns(batch_by_id),
        batch_by_name_columns(batch_by_name),
        recent_batches_columns(recent_batches),
        paused_batches_columns(paused_batches),
        attempt_columns(list_attempts) {}
  sql::Statement find_job, list_jobs, list_jobs_by_state, list_jobs_by_server, list_jobs_by_batch,
      list_attempts, count_states, last_request_id, oldest_queued, batch_by_id, batch_by_name,
      recent_batches, paused_batches, count_batch, count_unfinished_since, max_job_id,
      unfinished_between, joined_unfinished, min_unfinished_id;
  JobColumns find_job_columns, list_columns, list_by_state_columns, list_by_server_columns,
      list_by_batch_columns;
  BatchColumns batch_by_id_columns, batch_by_name_columns, recent_batches_columns,
      paused_batches_columns;
  AttemptColumns attempt_columns;
};

JobQueries::JobQueries(StoreConnection& connection)
    : connection_(connection), sql_(std::make_unique<Statements>(connection.db())) {}

JobQueries::~JobQueries() = default;

std::vector<Job> JobQueries::list(ListQuery q) {
  std::vector<Job> jobs;
  // "Maybe done" jobs are failed ones (jobs.maybe_done).
  if (q.maybe_done && !q.state) q.state = JobState::failed;
  auto& s = q.batch_id    ? sql_->list_jobs_by_batch
            : q.server_id ? sql_->list_jobs_by_server
            : q.state     ? sql_->list_jobs_by_state
                          : sql_->list_jobs;
  const JobColumns& columns = q.batch_id    ? sql_->list_by_batch_columns
                              : q.server_id ? sql_->list_by_server_columns
                              : q.state     ? sql_->list_by_state_columns
                                            : sql_->list_columns;
  s.bind(1, q.after_id)
      .bind(2,
            q.state ? std::optional<std::string>(std::string(to_string(*q.state))) : std::nullopt)
      .bind(3, q.server_id)
      .bind(4, q.limit);
  if (&s != &sql_->list_jobs) s.bind(8, std::int64_t{q.maybe_done ? 1 : 0});
  if (q.batch_id) {
    auto [first, last] = connection_.batch_range(*q.batch_id);
    s.bind(5, *q.batch_id).bind(6, first).bind(7, last);
  }
  while (s.step()) jobs.push_back(read_job(s, columns));
  s.reset();
  return jobs;
}

JobPage JobQueries::list_page(ListQuery q, const std::optional<std::string>& batch,
                              bool with_request_ids) {
  JobPage page;
  if (batch) {
    auto found = find_batch(*batch, /*count=*/false);
    if (!found) {
      page.batch_missing = true;
      return page;
    }
    q.batch_id = found->id;
  }
  page.jobs = list(q);
  if (with_request_ids) {
    for (const Job& j : page.jobs) page.request_ids.push_back(last_request_id(j.id));
  }
  return page;
}

std::optional<JobDetail> JobQueries::job_with_attempts(std::int64_t id) {
  auto job = find(id);
  if (!job) return std::nullopt;
  return JobDetail{std::move(*job), attempts_of(id)};
}

std::optional<Job> JobQueries::find(std::int64_t id) {
  auto& s = sql_->find_job;
  s.bind(1, id);
  std::optional<Job> job;
  if (s.step()) job = read_job(s, sql_->find_job_columns);
  s.reset();
  return job;
}

std::vector<Attempt> JobQueries::attempts_of(std::int64_t job_id) {
  std::vector<Attempt> out;
  auto& s = sql_->list_attempts;
  s.bind(1, job_id);
  const AttemptColumns& c = sql_->attempt_columns;
  while (s.step()) {
    Attempt a;
    a.job_id = s.column_int(c.job_id);
    a.n = s.column_int(c.n);
    a.started_at = s.column_int(c.started_at);
    a.finished_at = s.column_optional_int(c.finished_at);
    a.http_status = s.column_optional_int(c.http_status);
    a.task_id = s.column_optional_text(c.task_id);
    a.delivery_status = s.column_optional_text(c.delivery_status);
    a.error_code = s.column_optional_text(c.error_code);
    a.error_msg = s.column_optional_text(c.error_msg);
    a.request_id = s.column_optional_text(c.request_id);
    a.latency_ms = s.column_optional_int(c.latency_ms);
    a.look = s.column_optional_text(c.look);
    out.push_back(std::move(a));
  }
  s.reset();
  return out;
}

std::optional<Batch> JobQueries::find_batch(std::string_view id_or_name, bool count) {
  bool is_id = !id_or_name.empty() && id_or_name.size() <= 18 &&
               id_or_name.find_first_not_of("0123456789") == std::string_view::npos;
  auto& find = is_id ? sql_->batch_by_id : sql_->batch_by_name;
  const BatchColumns& columns = is_id ? sql_->batch_by_id_columns : sql_->batch_by_name_columns;
  if (is_id)
    find.bind(1, std::stoll(std::string(id_or_name)));
  else
    find.bind(1, id_or_name);
  if (!find.step()) {
    find.reset();
    return std::nullopt;
  }
  Batch b = read_batch(find, columns);
  find.reset();
  if (count) b.states = count_batch(b.id);
  return b;
}

std::map<JobState, std::int64_t> JobQueries::count_batch(std::int64_t batch_id) {
  auto [first, last] = connection_.batch_range(batch_id);
  return read_state_counts(sql_->count_batch.bind(1, batch_id).bind(2, first).bind(3, last));
}

std::optional<std::string> JobQueries::last_request_id(std::int64_t job_id) {
  auto& s = sql_->last_request_id;
  s.bind(1, job_id);
  std::optional<std::string> id = s.step() ? s.column_optional_text(0) : std::nullopt;
  s.reset();
  return id;
}

std::vector<Batch> JobQueries::paused_batches() {
  std::vector<Batch> out;
  auto& s = sql_->paused_batches;
  while (s.step()) out.push_back(read_batch(s, sql_->paused_batches_columns));
  s.reset();
  return out;
}

std::vector<Batch> JobQueries::list_batches(std::int64_t limit) {
  std::vector<Batch> out;
  auto& s = sql_->recent_batches;
  s.bind(1, limit);
  while (s.step()) out.push_back(read_batch(s, sql_->recent_batches_columns));
  s.reset();
  for (Batch& b : out) b.states = count_batch(b.id);
  return out;
}

std::map<JobState, std::int64_t> JobQueries::count_by_state() {
  return read_state_counts(sql_->count_states);
}

std::map<JobState, std::int64_t> JobQueries::count_unfinished_since(std::int64_t min_id,
                                                                    std::int64_t max_id,
                                                                    std::int64_t since) {
  return read_state_counts(
      sql_->count_unfinished_since.bind(1, min_id).bind(2, max_id).bind(3, since));
}

bool JobQueries::any_unfinished_between(std::int64_t min_id, std::int64_t max_id) {
  return has_row(sql_->unfinished_between.bind(1, min_id).bind(2, max_id));
}

bool JobQueries::batch_unfinished(std::int64_t batch_id) {
  // Its own jobs lie between its first and last id (others' jobs may be interleaved).
  auto [first, last] = connection_.batch_range(batch_id);
  if (has_row(sql_->unfinished_between.bind(1, first).bind(2, last).bind(3, batch_id))) {
    return true;
  }
  return has_row(sql_->joined_unfinished.bind(1, batch_id));
}

std::optional<std::int64_t> JobQueries::min_unfinished_id() {
  return single_int(sql_->min_unfinished_id);
}

std::int64_t JobQueries::max_job_id() { return single_int(sql_->max_job_id).value_or(0); }

std::optional<std::int64_t> JobQueries::oldest_queued_due() {
  return single_int(sql_->oldest_queued);
}

}  // namespace kpsd
