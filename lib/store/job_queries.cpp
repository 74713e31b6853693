// Reads: a page of jobs, a job with its attempts, batches, counts, and the cheap questions a
// waiting kpsctl asks. See job_store_rooms.hpp.
#include "store/job_store.hpp"
#include "store/job_store_rooms.hpp"

namespace kpsd {

namespace {

// The columns read_job reads, in its order.
constexpr const char* job_columns =
    "id, server_id, state, attempts, next_attempt_at, task_id, delivery_status, task_status, "
    "error_code, error_msg, created_at, updated_at, port, auth_type, task_error_code, "
    "task_error_msg, task_failures, maybe_done";

Job read_job(const sql::Statement& s) {
  Job j;
  j.id = s.column_int(0);
  j.server_id = s.column_text(1);
  // The CHECK constraint keeps state valid; fall back rather than crash if it was dropped.
  j.state = parse_job_state(s.column_text(2)).value_or(JobState::failed);
  j.attempts = s.column_int(3);
  j.next_attempt_at = s.column_int(4);
  if (j.next_attempt_at >= held_offset) {  // parked by a paused batch (0009)
    j.held = j.state == JobState::queued || j.state == JobState::retrying;
    j.next_attempt_at -= held_offset;  // a job cancelled while held keeps the offset
  }
  j.task_id = s.column_optional_text(5);
  j.delivery_status = s.column_optional_text(6);
  j.task_status = s.column_optional_text(7);
  j.error_code = s.column_optional_text(8);
  j.error_msg = s.column_optional_text(9);
  j.created_at = s.column_int(10);
  j.updated_at = s.column_int(11);
  j.port = s.column_optional_int(12);
  j.auth_type = s.column_optional_text(13);
  j.task_error_code = s.column_optional_text(14);
  j.task_error_msg = s.column_optional_text(15);
  j.task_failures = s.column_int(16);
  j.maybe_done = s.column_int(17) != 0;
  return j;
}

// The first column of a query that answers with at most one row; nullopt for no row or NULL.
std::optional<std::int64_t> single_int(sql::Statement& s) {
  std::optional<std::int64_t> v = s.step() ? s.column_optional_int(0) : std::nullopt;
  s.reset();
  return v;
}

// The columns read_batch reads, in its order.
constexpr const char* batch_columns =
    "SELECT id, name, created_at, paused_reason, coalesce(paused_at, 0), paused_detail, canary, "
    "max_failures, max_failure_pct, ended, failed FROM batches ";

// A row of batch_columns, its counts per state not yet made.
Batch read_batch(const sql::Statement& s) {
  Batch b;
  b.id = s.column_int(0);
  b.name = s.column_optional_text(1);
  b.created_at = s.column_int(2);
  if (auto reason = s.column_optional_text(3)) b.paused = parse_pause_reason(*reason);
  b.paused_at = s.column_int(4);
  b.paused_detail = s.column_optional_text(5);
  b.brakes.canary = s.column_optional_int(6);
  b.brakes.max_failures = s.column_optional_int(7);
  b.brakes.max_failure_pct = s.column_optional_double(8);
  b.ended = s.column_int(9);
  b.failed = s.column_int(10);
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

JobStore::Queries::Queries(sql::Database& db)
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
      // ?2 and ?3: the batch's first_job_id and last_job_id (a rowid range; see 0006).
      batch_range(db,
                  "SELECT coalesce(first_job_id, 1), coalesce(last_job_id, 0) FROM batches "
                  "WHERE id = ?1"),
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
                        "SELECT min(id) FROM jobs WHERE state = 'delivered')") {}

std::vector<Job> JobStore::list(ListQuery q) {
  std::vector<Job> jobs;
  // "Maybe done" jobs are failed ones (jobs.maybe_done).
  if (q.maybe_done && !q.state) q.state = JobState::failed;
  auto& s = q.batch_id    ? queries_->list_jobs_by_batch
            : q.server_id ? queries_->list_jobs_by_server
            : q.state     ? queries_->list_jobs_by_state
                          : queries_->list_jobs;
  s.bind(1, q.after_id)
      .bind(2,
            q.state ? std::optional<std::string>(std::string(to_string(*q.state))) : std::nullopt)
      .bind(3, q.server_id)
      .bind(4, q.limit);
  if (&s != &queries_->list_jobs) s.bind(8, std::int64_t{q.maybe_done ? 1 : 0});
  if (q.batch_id) {
    auto [first, last] = batch_range(*q.batch_id);
    s.bind(5, *q.batch_id).bind(6, first).bind(7, last);
  }
  while (s.step()) jobs.push_back(read_job(s));
  s.reset();
  return jobs;
}

JobPage JobStore::list_page(ListQuery q, const std::optional<std::string>& batch,
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

std::optional<JobDetail> JobStore::job_with_attempts(std::int64_t id) {
  auto job = find(id);
  if (!job) return std::nullopt;
  return JobDetail{std::move(*job), attempts_of(id)};
}

std::optional<Job> JobStore::find(std::int64_t id) {
  auto& s = queries_->find_job;
  s.bind(1, id);
  std::optional<Job> job;
  if (s.step()) job = read_job(s);
  s.reset();
  return job;
}

std::vector<Attempt> JobStore::attempts_of(std::int64_t job_id) {
  std::vector<Attempt> out;
  auto& s = queries_->list_attempts;
  s.bind(1, job_id);
  while (s.step()) {
    Attempt a;
    a.job_id = s.column_int(0);
    a.n = s.column_int(1);
    a.started_at = s.column_int(2);
    a.finished_at = s.column_optional_int(3);
    a.http_status = s.column_optional_int(4);
    a.task_id = s.column_optional_text(5);
    a.delivery_status = s.column_optional_text(6);
    a.error_code = s.column_optional_text(7);
    a.error_msg = s.column_optional_text(8);
    a.request_id = s.column_optional_text(9);
    a.latency_ms = s.column_optional_int(10);
    a.look = s.column_optional_text(11);
    out.push_back(std::move(a));
  }
  s.reset();
  return out;
}

std::optional<Batch> JobStore::find_batch(std::string_view id_or_name, bool count) {
  bool is_id = !id_or_name.empty() && id_or_name.size() <= 18 &&
               id_or_name.find_first_not_of("0123456789") == std::string_view::npos;
  auto& find = is_id ? queries_->batch_by_id : queries_->batch_by_name;
  if (is_id)
    find.bind(1, std::stoll(std::string(id_or_name)));
  else
    find.bind(1, id_or_name);
  if (!find.step()) {
    find.reset();
    return std::nullopt;
  }
  Batch b = read_batch(find);
  find.reset();
  if (count) b.states = count_batch(b.id);
  return b;
}

std::map<JobState, std::int64_t> JobStore::count_batch(std::int64_t batch_id) {
  auto [first, last] = batch_range(batch_id);
  return read_state_counts(queries_->count_batch.bind(1, batch_id).bind(2, first).bind(3, last));
}

std::optional<std::string> JobStore::last_request_id(std::int64_t job_id) {
  auto& s = queries_->last_request_id;
  s.bind(1, job_id);
  std::optional<std::string> id = s.step() ? s.column_optional_text(0) : std::nullopt;
  s.reset();
  return id;
}

std::pair<std::int64_t, std::int64_t> JobStore::batch_range(std::int64_t batch_id) {
  auto& s = queries_->batch_range;
  s.bind(1, batch_id);
  std::pair<std::int64_t, std::int64_t> range{1, 0};  // empty
  if (s.step()) range = {s.column_int(0), s.column_int(1)};
  s.reset();
  return range;
}

std::vector<Batch> JobStore::paused_batches() {
  std::vector<Batch> out;
  auto& s = queries_->paused_batches;
  while (s.step()) out.push_back(read_batch(s));
  s.reset();
  return out;
}

std::vector<Batch> JobStore::list_batches(std::int64_t limit) {
  std::vector<Batch> out;
  auto& s = queries_->recent_batches;
  s.bind(1, limit);
  while (s.step()) out.push_back(read_batch(s));
  s.reset();
  for (Batch& b : out) b.states = count_batch(b.id);
  return out;
}

std::map<JobState, std::int64_t> JobStore::count_by_state() {
  return read_state_counts(queries_->count_states);
}

std::map<JobState, std::int64_t> JobStore::count_unfinished_since(std::int64_t min_id,
                                                                  std::int64_t max_id,
                                                                  std::int64_t since) {
  return read_state_counts(
      queries_->count_unfinished_since.bind(1, min_id).bind(2, max_id).bind(3, since));
}

bool JobStore::any_unfinished_between(std::int64_t min_id, std::int64_t max_id) {
  return has_row(queries_->unfinished_between.bind(1, min_id).bind(2, max_id));
}

bool JobStore::batch_unfinished(std::int64_t batch_id) {
  // Its own jobs lie between its first and last id (others' jobs may be interleaved).
  auto [first, last] = batch_range(batch_id);
  if (has_row(queries_->unfinished_between.bind(1, first).bind(2, last).bind(3, batch_id))) {
    return true;
  }
  return has_row(queries_->joined_unfinished.bind(1, batch_id));
}

std::optional<std::int64_t> JobStore::min_unfinished_id() {
  return single_int(queries_->min_unfinished_id);
}

std::int64_t JobStore::max_job_id() { return single_int(queries_->max_job_id).value_or(0); }

std::optional<std::int64_t> JobStore::oldest_queued_due() {
  return single_int(queries_->oldest_queued);
}

}  // namespace kpsd
