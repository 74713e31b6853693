#include "job_store.hpp"

#include "migrations.hpp"
#include "sqlite.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <stdexcept>
#include <unistd.h>

namespace kpsd {

namespace {

constexpr const char* job_columns =
    "id, server_id, state, attempts, next_attempt_at, task_id, delivery_status, task_status, "
    "error_code, error_msg, created_at, updated_at, port, auth_type, task_error_code, "
    "task_error_msg";

Job read_job(const sql::Statement& s) {
  Job j;
  j.id = s.column_int(0);
  j.server_id = s.column_text(1);
  // The CHECK constraint keeps state valid; fall back rather than crash if it was dropped.
  j.state = parse_job_state(s.column_text(2)).value_or(JobState::failed);
  j.attempts = s.column_int(3);
  j.next_attempt_at = s.column_int(4);
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
  return j;
}

std::optional<std::string> non_empty(const std::string& s) {
  if (s.empty()) return std::nullopt;
  return s;
}

// SQLite creates the -wal and -shm files with the database file's mode, so creating the
// database 0600 up front keeps all three private (job secrets live in it).
void create_private_file(const std::string& path) {
  if (path == ":memory:" || path.empty()) return;
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    throw std::runtime_error("cannot open database " + path + ": " + std::strerror(errno));
  }
  ::close(fd);
}

constexpr std::int64_t kpsd_application_id = 1802531684;  // 'kpsd', set by migration 0004

// Before the file is created or opened: an existing, non-empty file must be an SQLite database.
void check_is_kpsd_database_file(const std::string& path) {
  if (path == ":memory:" || path.empty()) return;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;  // created next (or the open below reports why not)
  char header[16] = {};
  ssize_t n = ::read(fd, header, sizeof(header));
  ::close(fd);
  if (n == 0) return;  // empty: a new database
  if (n != 16 || std::memcmp(header, "SQLite format 3", 16) != 0) {
    throw std::runtime_error("database " + path +
                             " is not an SQLite database; refusing to touch it (check "
                             "queue.database)");
  }
}

// After opening, before the first change (journal mode, migrations): the database must be
// kpsd's own, or empty. Reads only.
void check_is_kpsd_database(sql::Database& db, const std::string& path) {
  std::int64_t application_id = db.pragma_int("application_id");
  if (application_id == kpsd_application_id) return;
  std::int64_t version = db.pragma_int("user_version");
  sql::Statement tables(db,
                        "SELECT name FROM sqlite_schema WHERE type = 'table' "
                        "AND name NOT LIKE 'sqlite_%' ORDER BY name");
  std::vector<std::string> names;
  while (tables.step()) names.push_back(tables.column_text(0));
  tables.reset();
  if (application_id == 0 && version == 0 && names.empty()) return;  // empty: ours to set up
  auto has = [&](std::string_view t) {
    return std::find(names.begin(), names.end(), t) != names.end();
  };
  // Written by kpsd before migration 0004 gave it an application id.
  if (application_id == 0 && version >= 1 && has("jobs") && has("attempts") && has("job_secrets")) {
    return;
  }
  std::string listed;
  for (std::size_t i = 0; i < names.size() && i < 5; ++i) {
    listed += (i ? ", " : "") + names[i];
  }
  if (names.size() > 5) listed += ", ...";
  throw std::runtime_error("database " + path + " is not a kpsd database (application_id " +
                           std::to_string(application_id) + ", user_version " +
                           std::to_string(version) + (listed.empty() ? "" : ", tables " + listed) +
                           "); refusing to change it (check queue.database)");
}

}  // namespace

struct JobStore::Statements {
  explicit Statements(sql::Database& db)
      : find_active_by_server(db,
                              "SELECT id, batch_id FROM jobs WHERE server_id = ?1 AND state IN "
                              "('queued','running','retrying','delivered') LIMIT 1"),
        insert_job(db,
                   "INSERT INTO jobs (server_id, state, next_attempt_at, created_at, updated_at, "
                   "port, auth_type, batch_id) VALUES (?1, 'queued', ?2, ?2, ?2, ?3, ?4, ?5)"),
        insert_secret(db, "INSERT INTO job_secrets (job_id, key) VALUES (?1, ?2)"),
        promote_retries(db,
                        "UPDATE jobs SET state = 'queued', updated_at = ?1 "
                        "WHERE state = 'retrying' AND next_attempt_at <= ?1"),
        select_due(db,
                   "SELECT j.id, j.server_id, j.port, j.auth_type, j.attempts, s.key, "
                   "(SELECT a.http_status FROM attempts a WHERE a.job_id = j.id "
                   "ORDER BY a.n DESC LIMIT 1) "
                   "FROM jobs j LEFT JOIN job_secrets s ON s.job_id = j.id "
                   "WHERE j.state = 'queued' AND j.next_attempt_at <= ?1 "
                   "ORDER BY j.next_attempt_at, j.id LIMIT ?2"),
        // The attempt is used when the call is claimed, so a call that kills kpsd still counts.
        mark_running(db,
                     "UPDATE jobs SET state = 'running', attempts = attempts + 1, updated_at = ?2 "
                     "WHERE id = ?1"),
        fail_key_gone(db,
                      "UPDATE jobs SET state = 'failed', error_code = NULL, "
                      "error_msg = 'key no longer held: enqueue again with the key', "
                      "updated_at = ?2 WHERE id = ?1"),
        open_attempt(db,
                     "INSERT INTO attempts (job_id, n, started_at) VALUES (?1, "
                     "(SELECT coalesce(max(n), 0) + 1 FROM attempts WHERE job_id = ?1), ?2) "
                     "RETURNING n"),
        close_attempt(db,
                      "UPDATE attempts SET finished_at = ?3, http_status = ?4, task_id = ?5, "
                      "delivery_status = ?6, error_code = ?7, error_msg = ?8, request_id = ?9, "
                      "latency_ms = ?10 WHERE job_id = ?1 AND n = ?2"),
        update_after_attempt(
            db,
            // Fenced: only the job's current call (its newest attempt row) moves it.
            "UPDATE jobs SET state = ?2, attempts = attempts - ?3, next_attempt_at = ?4, "
            "task_id = ?5, delivery_status = ?6, task_status = NULL, error_code = ?7, "
            "error_msg = ?8, updated_at = ?9, poll_refusals = 0, "
            "delivered_at = CASE WHEN ?2 = 'delivered' THEN ?9 ELSE delivered_at END "
            "WHERE id = ?1 AND state = 'running' AND NOT EXISTS "
            "(SELECT 1 FROM attempts a WHERE a.job_id = ?1 AND a.n > ?10)"),
        delete_secret(db, "DELETE FROM job_secrets WHERE job_id = ?1"),
        delete_open_attempt(db,
                            "DELETE FROM attempts WHERE job_id = ?1 AND n = ?2 "
                            "AND finished_at IS NULL"),
        release_claim(db,
                      "UPDATE jobs SET state = 'queued', attempts = attempts - 1, "
                      "next_attempt_at = ?3, updated_at = ?3 WHERE id = ?1 AND state = 'running' "
                      "AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.job_id = ?1 AND a.n > ?2)"),
        select_polls(db,
                     "SELECT id, attempts, task_id, coalesce(delivered_at, updated_at), "
                     "poll_refusals, server_id FROM jobs "
                     "WHERE state = 'delivered' AND next_attempt_at <= ?1 "
                     "ORDER BY next_attempt_at, id LIMIT ?2"),
        lease_poll(db, "UPDATE jobs SET next_attempt_at = ?2 WHERE id = ?1"),
        // A success clears the reasons of earlier failed attempts; otherwise a NULL keeps them.
        // Fenced: only the poll holding the current lease (next_attempt_at) moves the job.
        update_after_poll(db,
                          "UPDATE jobs SET state = ?2, next_attempt_at = ?3, poll_refusals = ?11, "
                          "task_status = coalesce(?4, task_status), "
                          "error_code = CASE WHEN ?2 = 'succeeded' THEN NULL "
                          "ELSE coalesce(?5, error_code) END, "
                          "error_msg = CASE WHEN ?2 = 'succeeded' THEN NULL "
                          "ELSE coalesce(?6, error_msg) END, "
                          "task_error_code = coalesce(?8, task_error_code), "
                          "task_error_msg = coalesce(?9, task_error_msg), updated_at = ?7 "
                          "WHERE id = ?1 AND state = 'delivered' AND next_attempt_at = ?10"),
        min_due(db, "SELECT min(next_attempt_at) FROM jobs WHERE state = ?1"),
        // A job whose calls keep killing kpsd runs out of attempts like any other.
        requeue_running(db,
                        "UPDATE jobs SET updated_at = ?1, next_attempt_at = ?1, "
                        "state = CASE WHEN attempts >= ?2 THEN 'failed' ELSE 'queued' END, "
                        "error_msg = CASE WHEN attempts >= ?2 THEN 'gave up after ' || attempts || "
                        "' attempts: outcome lost: daemon stopped' ELSE error_msg END "
                        "WHERE state = 'running'"),
        delete_ended_secrets(db,
                             "DELETE FROM job_secrets WHERE job_id IN (SELECT id FROM jobs "
                             "WHERE state IN ('succeeded','failed','cancelled'))"),
        close_lost_attempts(db,
                            "UPDATE attempts SET finished_at = ?1, "
                            "error_msg = 'outcome lost: daemon stopped' "
                            "WHERE finished_at IS NULL"),
        find_job(db, std::string("SELECT ") + job_columns + " FROM jobs WHERE id = ?1"),
        // One statement per filter, so each can walk its own index in id order.
        list_jobs(db, std::string("SELECT ") + job_columns +
                          " FROM jobs WHERE id > ?1 ORDER BY id LIMIT ?4"),
        list_jobs_by_state(db, std::string("SELECT ") + job_columns +
                                   " FROM jobs WHERE state = ?2 AND id > ?1 ORDER BY id LIMIT ?4"),
        list_jobs_by_server(db, std::string("SELECT ") + job_columns +
                                    " FROM jobs WHERE server_id = ?3 AND id > ?1 "
                                    "AND (?2 IS NULL OR state = ?2) ORDER BY id LIMIT ?4"),
        list_attempts(db,
                      "SELECT job_id, n, started_at, finished_at, http_status, task_id, "
                      "delivery_status, error_code, error_msg, request_id, latency_ms "
                      "FROM attempts WHERE job_id = ?1 ORDER BY n"),
        count_states(db, "SELECT state, n FROM job_counts"),
        last_request_id(db,
                        "SELECT request_id FROM attempts WHERE job_id = ?1 "
                        "AND request_id IS NOT NULL ORDER BY n DESC LIMIT 1"),
        oldest_queued(db, "SELECT min(next_attempt_at) FROM jobs WHERE state = 'queued'"),
        retry_target(db,
                     "SELECT state, auth_type IS NOT NULL AND NOT EXISTS "
                     "(SELECT 1 FROM job_secrets s WHERE s.job_id = jobs.id), "
                     "task_id IS NOT NULL AND (coalesce(error_msg, '') LIKE 'task still pending%' "
                     "OR coalesce(error_msg, '') LIKE 'cannot follow task%'), "
                     "EXISTS (SELECT 1 FROM attempts a WHERE a.job_id = jobs.id "
                     "AND a.finished_at IS NULL) "
                     "FROM jobs WHERE id = ?1"),
        requeue_job(db,
                    "UPDATE jobs SET state = 'queued', attempts = 0, next_attempt_at = ?2, "
                    "error_code = NULL, error_msg = NULL, updated_at = ?2 WHERE id = ?1"),
        recheck_job(db,
                    "UPDATE jobs SET state = 'delivered', next_attempt_at = ?2, delivered_at = ?2, "
                    "poll_refusals = 0, error_code = NULL, error_msg = NULL, updated_at = ?2 "
                    "WHERE id = ?1"),
        ids_in_state(db, "SELECT id FROM jobs WHERE state = ?1 ORDER BY id"),
        cancel_job(db,
                   "UPDATE jobs SET state = 'cancelled', updated_at = ?2, "
                   "error_msg = 'cancelled by the operator' WHERE id = ?1 AND state IN "
                   "('queued','running','retrying','delivered')"),
        job_exists(db, "SELECT 1 FROM jobs WHERE id = ?1"),
        insert_batch(db, "INSERT INTO batches (name, created_at) VALUES (?1, ?2)"),
        batch_by_id(db, "SELECT id, name, created_at FROM batches WHERE id = ?1"),
        batch_by_name(db, "SELECT id, name, created_at FROM batches WHERE name = ?1"),
        recent_batches(db, "SELECT id, name, created_at FROM batches ORDER BY id DESC LIMIT ?1"),
        add_to_batch(db, "INSERT OR IGNORE INTO batch_jobs (batch_id, job_id) VALUES (?1, ?2)"),
        // ?2 and ?3: the batch's first_job_id and last_job_id (a rowid range; see 0006).
        batch_range(db,
                    "SELECT coalesce(first_job_id, 1), coalesce(last_job_id, 0) FROM batches "
                    "WHERE id = ?1"),
        extend_batch(db,
                     "UPDATE batches SET first_job_id = min(coalesce(first_job_id, ?2), ?2), "
                     "last_job_id = max(coalesce(last_job_id, ?3), ?3) WHERE id = ?1"),
        // The jobs it created, then those that joined it.
        count_batch(db,
                    "SELECT state, count(*) FROM jobs WHERE id BETWEEN ?2 AND ?3 AND batch_id = ?1 "
                    "GROUP BY state UNION ALL "
                    "SELECT j.state, count(*) FROM batch_jobs b JOIN jobs j ON j.id = b.job_id "
                    "WHERE b.batch_id = ?1 GROUP BY j.state"),
        // The jobs it created (a rowid range) merged in id order with those that joined it, so
        // a page of a million-job batch is a short walk, not a sort.
        list_jobs_by_batch(
            db, std::string("SELECT ") + job_columns +
                    " FROM jobs WHERE id > ?1 AND id BETWEEN ?6 AND ?7 AND batch_id = ?5 "
                    "AND (?2 IS NULL OR state = ?2) AND (?3 IS NULL OR server_id = ?3) "
                    "UNION ALL SELECT " +
                    job_columns +
                    " FROM jobs WHERE id IN (SELECT job_id FROM batch_jobs WHERE batch_id = ?5 "
                    "AND job_id > ?1) AND (?2 IS NULL OR state = ?2) "
                    "AND (?3 IS NULL OR server_id = ?3) ORDER BY 1 LIMIT ?4"),
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
        // In id order through jobs_state: the oldest jobs have the lowest ids, so a chunk is
        // found near the start of each state's range. There is no index on the end time: it
        // would cost every job an index write as it ends (a quarter of the raw throughput).
        select_prunable(db,
                        "SELECT id FROM jobs WHERE state IN ('succeeded','failed','cancelled') "
                        "AND updated_at < ?1 LIMIT ?2"),
        delete_job(db, "DELETE FROM jobs WHERE id = ?1"),
        delete_empty_batches(db,
                             "DELETE FROM batches WHERE created_at < ?1 AND NOT EXISTS "
                             "(SELECT 1 FROM jobs j WHERE j.id BETWEEN batches.first_job_id AND "
                             "batches.last_job_id AND j.batch_id = batches.id) AND NOT EXISTS "
                             "(SELECT 1 FROM batch_jobs b WHERE b.batch_id = batches.id)"),
        get_setting(db, "SELECT value FROM settings WHERE key = ?1"),
        put_setting(db,
                    "INSERT INTO settings (key, value) VALUES (?1, ?2) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value") {}

  sql::Statement find_active_by_server, insert_job, insert_secret, promote_retries, select_due,
      mark_running, fail_key_gone, open_attempt, close_attempt, update_after_attempt, delete_secret,
      delete_open_attempt, release_claim, select_polls, lease_poll, update_after_poll, min_due,
      requeue_running, delete_ended_secrets, close_lost_attempts, find_job, list_jobs,
      list_jobs_by_state, list_jobs_by_server, list_attempts, count_states, last_request_id,
      oldest_queued, retry_target, requeue_job, recheck_job, ids_in_state, cancel_job, job_exists,
      insert_batch, batch_by_id, batch_by_name, recent_batches, add_to_batch, batch_range,
      extend_batch, count_batch, list_jobs_by_batch, count_unfinished_since, max_job_id,
      unfinished_between, joined_unfinished, min_unfinished_id, select_prunable, delete_job,
      delete_empty_batches, get_setting, put_setting;
};

JobStore::JobStore(const std::string& path) {
  check_is_kpsd_database_file(path);
  create_private_file(path);
  db_ = std::make_unique<sql::Database>(path);
  // A lock held by another writer (an sqlite3 shell inserting jobs) is waited for this long;
  // past it the write fails, and the scheduler keeps its outcomes and tries again, so a short
  // wait keeps the DB thread free to answer kpsctl during a long lock.
  db_->exec("PRAGMA busy_timeout = 1000");
  check_is_kpsd_database(*db_, path);
  // WAL: readers (sqlite3 by hand, later kpsctl) never block the writer. synchronous=FULL: a
  // committed transition survives power loss, not only a crash of kpsd.
  db_->exec("PRAGMA journal_mode = WAL");
  db_->exec("PRAGMA synchronous = FULL");
  db_->exec("PRAGMA foreign_keys = ON");
  // Debian's SQLite already defaults to it; say it so the guarantee does not depend on the build.
  db_->exec("PRAGMA secure_delete = ON");
  schema_version_ = apply_migrations(*db_, embedded_migrations());
  st_ = std::make_unique<Statements>(*db_);
}

JobStore::~JobStore() = default;

int JobStore::recover_after_restart(std::int64_t now, std::int64_t max_attempts) {
  sql::Transaction tx(*db_);
  st_->close_lost_attempts.bind(1, now).run();
  st_->requeue_running.bind(1, now).bind(2, max_attempts).run();
  int requeued = db_->changes();
  st_->delete_ended_secrets.run();
  int deleted = db_->changes();
  tx.commit();
  if (deleted) scrub_wal();
  return requeued;
}

std::vector<EnqueueResult> JobStore::enqueue(std::span<const NewJob> jobs, std::int64_t now) {
  return enqueue(jobs, now, BatchTarget{}).jobs;
}

EnqueueBatchResult JobStore::enqueue(std::span<const NewJob> jobs, std::int64_t now,
                                     const BatchTarget& batch) {
  EnqueueBatchResult out;
  out.jobs.reserve(jobs.size());
  sql::Transaction tx(*db_);
  if (batch.id) {
    auto& find = st_->batch_by_id;
    find.bind(1, *batch.id);
    bool found = find.step();
    find.reset();
    if (!found) {
      out.error = "no batch " + std::to_string(*batch.id);
      return out;
    }
    out.batch_id = *batch.id;
  } else {
    if (batch.name) {
      auto& find = st_->batch_by_name;
      find.bind(1, std::string_view(*batch.name));
      if (find.step()) {
        out.error = "batch name `" + *batch.name + "` is taken (batch " +
                    std::to_string(find.column_int(0)) + "); choose another";
        find.reset();
        return out;
      }
      find.reset();
    }
    st_->insert_batch.bind(1, batch.name).bind(2, now).run();
    out.batch_id = db_->last_insert_rowid();
  }
  std::optional<std::int64_t> first_created, last_created;
  for (const NewJob& job : jobs) {
    auto& find = st_->find_active_by_server;
    find.bind(1, std::string_view(job.server_id));
    EnqueueResult r;
    if (find.step()) {
      r = {find.column_int(0), true};
      bool same_batch = find.column_optional_int(1) == out.batch_id;
      find.reset();
      // Already queued by another batch (or by plain SQL): it joins this one too.
      if (!same_batch) st_->add_to_batch.bind(1, out.batch_id).bind(2, r.id).run();
    } else {
      find.reset();
      st_->insert_job.bind(1, std::string_view(job.server_id))
          .bind(2, now)
          .bind(3, job.port)
          .bind(4, job.auth ? std::optional<std::string>(job.auth->type) : std::nullopt)
          .bind(5, out.batch_id)
          .run();
      r = {db_->last_insert_rowid(), false};
      if (job.auth) st_->insert_secret.bind(1, r.id).bind_blob(2, job.auth->key.reveal()).run();
      if (!first_created) first_created = r.id;
      last_created = r.id;
    }
    out.jobs.push_back(r);
  }
  if (first_created) {
    st_->extend_batch.bind(1, out.batch_id).bind(2, *first_created).bind(3, *last_created).run();
  }
  tx.commit();
  return out;
}

std::vector<DeliveryWork> JobStore::claim_for_delivery(std::int64_t now, std::size_t limit) {
  sql::Transaction tx(*db_);
  auto work = claim_deliveries(now, limit);
  tx.commit();
  return work;
}

std::vector<DeliveryWork> JobStore::claim_deliveries(std::int64_t now, std::size_t limit) {
  std::vector<DeliveryWork> work;
  st_->promote_retries.bind(1, now).run();
  if (limit > 0) {
    auto& sel = st_->select_due;
    sel.bind(1, now).bind(2, static_cast<std::int64_t>(limit));
    while (sel.step()) {
      DeliveryWork w;
      w.job_id = sel.column_int(0);
      w.server_id = sel.column_text(1);
      w.port = sel.column_optional_int(2);
      auto auth_type = sel.column_optional_text(3);
      w.attempts_used = sel.column_int(4);
      if (auth_type && !sel.column_is_null(5))
        w.auth = JobAuth{*auth_type, Secret(sel.column_text(5))};
      w.key_gone = auth_type && sel.column_is_null(5);
      w.previous_was_401 = sel.column_optional_int(6) == 401;
      work.push_back(std::move(w));
    }
    sel.reset();
    // A replace-form job whose key is gone is never sent in reset form.
    std::erase_if(work, [&](const DeliveryWork& w) {
      if (!w.key_gone) return false;
      st_->fail_key_gone.bind(1, w.job_id).bind(2, now).run();
      return true;
    });
    for (DeliveryWork& w : work) {
      st_->mark_running.bind(1, w.job_id).bind(2, now).run();
      auto& open = st_->open_attempt;
      open.bind(1, w.job_id).bind(2, now);
      if (!open.step()) throw std::logic_error("INSERT ... RETURNING gave no row");
      w.attempt_n = open.column_int(0);
      open.reset();
    }
  }
  return work;
}

int JobStore::delete_secret(std::int64_t job_id) {
  st_->delete_secret.bind(1, job_id).run();
  return db_->changes();
}

void JobStore::scrub_wal() {
  // The WAL still holds the frames that wrote the secret in; a TRUNCATE checkpoint copies the
  // scrubbed pages (secure_delete zeroed the row) into the database and empties the WAL file.
  // Best effort: a reader holding an old snapshot (an open sqlite3 shell) can make it partial.
  try {
    db_->exec("PRAGMA wal_checkpoint(TRUNCATE)");
  } catch (const sql::Error&) {
  }
}

void JobStore::finish_attempts(std::span<const AttemptFinish> finished) {
  sql::Transaction tx(*db_);
  int deleted = record_attempts(finished);
  tx.commit();
  if (deleted) scrub_wal();
}

int JobStore::record_attempts(std::span<const AttemptFinish> finished) {
  int deleted = 0;
  for (const AttemptFinish& f : finished) {
    if (f.release_claim) {
      st_->release_claim.bind(1, f.job_id).bind(2, f.attempt_n).bind(3, f.next_attempt_at).run();
      st_->delete_open_attempt.bind(1, f.job_id).bind(2, f.attempt_n).run();
      continue;
    }
    st_->close_attempt.bind(1, f.job_id)
        .bind(2, f.attempt_n)
        .bind(3, f.finished_at)
        .bind(4, f.http_status)
        .bind(5, non_empty(f.task_id))
        .bind(6, non_empty(f.delivery_status))
        .bind(7, non_empty(f.error_code))
        .bind(8, non_empty(f.error_msg))
        .bind(9, non_empty(f.request_id))
        .bind(10, f.latency_ms)
        .run();
    st_->update_after_attempt.bind(1, f.job_id)
        .bind(2, to_string(f.next_state))
        .bind(3, std::int64_t{f.counts_attempt ? 0 : 1})  // give back the claimed attempt
        .bind(4, f.next_attempt_at)
        .bind(5, non_empty(f.task_id))
        .bind(6, non_empty(f.delivery_status))
        .bind(7, non_empty(f.error_code))
        .bind(8, non_empty(f.error_msg))
        .bind(9, f.finished_at)
        .bind(10, f.attempt_n)
        .run();
    if (is_terminal(f.next_state)) deleted += delete_secret(f.job_id);
  }
  return deleted;
}

std::vector<PollWork> JobStore::claim_for_poll(std::int64_t now, std::int64_t lease_until,
                                               std::size_t limit) {
  if (limit == 0) return {};
  sql::Transaction tx(*db_);
  auto work = claim_polls(now, lease_until, limit);
  tx.commit();
  return work;
}

std::vector<PollWork> JobStore::claim_polls(std::int64_t now, std::int64_t lease_until,
                                            std::size_t limit) {
  std::vector<PollWork> work;
  if (limit == 0) return work;
  auto& sel = st_->select_polls;
  sel.bind(1, now).bind(2, static_cast<std::int64_t>(limit));
  while (sel.step()) {
    PollWork w;
    w.job_id = sel.column_int(0);
    w.attempts_used = sel.column_int(1);
    w.task_id = sel.column_text(2);
    w.delivered_at = sel.column_int(3);
    w.poll_refusals = sel.column_int(4);
    w.lease_until = lease_until;
    w.server_id = sel.column_text(5);
    work.push_back(std::move(w));
  }
  sel.reset();
  for (const PollWork& w : work) st_->lease_poll.bind(1, w.job_id).bind(2, lease_until).run();
  return work;
}

void JobStore::finish_polls(std::span<const PollFinish> finished) {
  sql::Transaction tx(*db_);
  int deleted = record_polls(finished);
  tx.commit();
  if (deleted) scrub_wal();
}

int JobStore::record_polls(std::span<const PollFinish> finished) {
  int deleted = 0;
  for (const PollFinish& f : finished) {
    st_->update_after_poll.bind(1, f.job_id)
        .bind(2, to_string(f.next_state))
        .bind(3, f.next_attempt_at)
        .bind(4, f.task_status)
        .bind(5, f.error_code)
        .bind(6, f.error_msg)
        .bind(7, f.at)
        .bind(8, f.task_error_code)
        .bind(9, f.task_error_msg)
        .bind(10, f.lease_until)
        .bind(11, f.poll_refusals)
        .run();
    if (is_terminal(f.next_state)) deleted += delete_secret(f.job_id);
  }
  return deleted;
}

Claimed JobStore::claim(const ClaimRequest& next) {
  Claimed c;
  if (next.limit == 0) return c;
  c.polls = claim_polls(next.now, next.poll_lease_until, next.limit);
  if (c.polls.size() < next.limit)
    c.deliveries = claim_deliveries(next.now, next.limit - c.polls.size());
  return c;
}

Claimed JobStore::record_and_claim(const std::function<int()>& record, const ClaimRequest& next) {
  sql::Transaction tx(*db_);
  int deleted = record();
  Claimed c = claim(next);
  tx.commit();
  if (deleted) scrub_wal();
  return c;
}

Claimed JobStore::finish_and_claim(std::span<const AttemptFinish> finished,
                                   const ClaimRequest& next) {
  return record_and_claim([&] { return record_attempts(finished); }, next);
}

Claimed JobStore::finish_and_claim(std::span<const PollFinish> finished, const ClaimRequest& next) {
  return record_and_claim([&] { return record_polls(finished); }, next);
}

std::optional<std::int64_t> JobStore::next_due_at() {
  std::optional<std::int64_t> earliest;
  for (const char* state : {"queued", "retrying", "delivered"}) {
    auto& s = st_->min_due;
    s.bind(1, std::string_view(state));
    if (s.step() && !s.column_is_null(0)) {
      std::int64_t v = s.column_int(0);
      if (!earliest || v < *earliest) earliest = v;
    }
    s.reset();
  }
  return earliest;
}

std::vector<Job> JobStore::list(const ListQuery& q) {
  std::vector<Job> jobs;
  auto& s = q.batch_id    ? st_->list_jobs_by_batch
            : q.server_id ? st_->list_jobs_by_server
            : q.state     ? st_->list_jobs_by_state
                          : st_->list_jobs;
  s.bind(1, q.after_id)
      .bind(2,
            q.state ? std::optional<std::string>(std::string(to_string(*q.state))) : std::nullopt)
      .bind(3, q.server_id)
      .bind(4, q.limit);
  if (q.batch_id) {
    auto [first, last] = batch_range(*q.batch_id);
    s.bind(5, *q.batch_id).bind(6, first).bind(7, last);
  }
  while (s.step()) jobs.push_back(read_job(s));
  s.reset();
  return jobs;
}

std::optional<Job> JobStore::find(std::int64_t id) {
  auto& s = st_->find_job;
  s.bind(1, id);
  std::optional<Job> job;
  if (s.step()) job = read_job(s);
  s.reset();
  return job;
}

std::vector<Attempt> JobStore::attempts_of(std::int64_t job_id) {
  std::vector<Attempt> out;
  auto& s = st_->list_attempts;
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
    out.push_back(std::move(a));
  }
  s.reset();
  return out;
}

namespace {
// The first column of a query that answers with at most one row; nullopt for no row or NULL.
std::optional<std::int64_t> single_int(sql::Statement& s) {
  std::optional<std::int64_t> v = s.step() ? s.column_optional_int(0) : std::nullopt;
  s.reset();
  return v;
}

// A row of (id, name, created_at) from batches, its counts not yet made.
Batch read_batch(const sql::Statement& s) {
  return Batch{s.column_int(0), s.column_optional_text(1), s.column_int(2), {}};
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
}  // namespace

std::optional<Batch> JobStore::find_batch(std::string_view id_or_name, bool count) {
  bool is_id = !id_or_name.empty() && id_or_name.size() <= 18 &&
               id_or_name.find_first_not_of("0123456789") == std::string_view::npos;
  auto& find = is_id ? st_->batch_by_id : st_->batch_by_name;
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
  return read_state_counts(st_->count_batch.bind(1, batch_id).bind(2, first).bind(3, last));
}

std::optional<std::string> JobStore::last_request_id(std::int64_t job_id) {
  auto& s = st_->last_request_id;
  s.bind(1, job_id);
  std::optional<std::string> id = s.step() ? s.column_optional_text(0) : std::nullopt;
  s.reset();
  return id;
}

std::pair<std::int64_t, std::int64_t> JobStore::batch_range(std::int64_t batch_id) {
  auto& s = st_->batch_range;
  s.bind(1, batch_id);
  std::pair<std::int64_t, std::int64_t> range{1, 0};  // empty
  if (s.step()) range = {s.column_int(0), s.column_int(1)};
  s.reset();
  return range;
}

std::vector<Batch> JobStore::list_batches(std::int64_t limit) {
  std::vector<Batch> out;
  auto& s = st_->recent_batches;
  s.bind(1, limit);
  while (s.step()) out.push_back(read_batch(s));
  s.reset();
  for (Batch& b : out) b.states = count_batch(b.id);
  return out;
}

std::map<JobState, std::int64_t> JobStore::count_by_state() {
  return read_state_counts(st_->count_states);
}

std::map<JobState, std::int64_t> JobStore::count_unfinished_since(std::int64_t min_id,
                                                                  std::int64_t max_id,
                                                                  std::int64_t since) {
  return read_state_counts(
      st_->count_unfinished_since.bind(1, min_id).bind(2, max_id).bind(3, since));
}

namespace {
// Runs a query that answers with at most one row; true if it did.
bool has_row(sql::Statement& s) {
  bool found = s.step();
  s.reset();
  return found;
}
}  // namespace

bool JobStore::any_unfinished_between(std::int64_t min_id, std::int64_t max_id) {
  return has_row(st_->unfinished_between.bind(1, min_id).bind(2, max_id));
}

bool JobStore::batch_unfinished(std::int64_t batch_id) {
  // Its own jobs lie between its first and last id (others' jobs may be interleaved).
  auto [first, last] = batch_range(batch_id);
  if (has_row(st_->unfinished_between.bind(1, first).bind(2, last).bind(3, batch_id))) {
    return true;
  }
  return has_row(st_->joined_unfinished.bind(1, batch_id));
}

std::optional<std::int64_t> JobStore::min_unfinished_id() {
  return single_int(st_->min_unfinished_id);
}

std::int64_t JobStore::max_job_id() { return single_int(st_->max_job_id).value_or(0); }

std::int64_t JobStore::prune_finished(std::int64_t before, std::int64_t limit) {
  sql::Transaction tx(*db_);
  std::vector<std::int64_t> ids;
  auto& sel = st_->select_prunable;
  sel.bind(1, before).bind(2, limit);
  while (sel.step()) ids.push_back(sel.column_int(0));
  sel.reset();
  for (std::int64_t id : ids) st_->delete_job.bind(1, id).run();
  st_->delete_empty_batches.bind(1, before).run();
  tx.commit();
  return static_cast<std::int64_t>(ids.size());
}

std::optional<std::int64_t> JobStore::oldest_queued_due() {
  return single_int(st_->oldest_queued);
}

std::string_view describe(RetryOutcome o) noexcept {
  switch (o) {
    case RetryOutcome::requeued:
      return "queued again";
    case RetryOutcome::rechecking:
      return "polling its task again";
    case RetryOutcome::not_found:
      return "no such job";
    case RetryOutcome::not_ended:
      return "not failed or cancelled: nothing to retry yet";
    case RetryOutcome::succeeded:
      return "already succeeded";
    case RetryOutcome::key_gone:
      return "replace-form job whose key was deleted when it ended: enqueue it again with its key";
    case RetryOutcome::call_in_flight:
      return "its call (cancelled) is still in flight: retry once it has ended";
  }
  return "unknown";
}

namespace {
// Applies a retry to one job inside the caller's transaction.
RetryOutcome retry_one(sql::Statement& target, sql::Statement& requeue, sql::Statement& recheck,
                       std::int64_t id, std::int64_t now) {
  target.bind(1, id);
  if (!target.step()) {
    target.reset();
    return RetryOutcome::not_found;
  }
  auto state = parse_job_state(target.column_text(0));
  bool key_gone = target.column_int(1) != 0;
  bool task_pending = target.column_int(2) != 0;
  bool call_in_flight = target.column_int(3) != 0;
  target.reset();
  if (state == JobState::succeeded) return RetryOutcome::succeeded;
  if (state != JobState::failed && state != JobState::cancelled) return RetryOutcome::not_ended;
  if (call_in_flight) return RetryOutcome::call_in_flight;
  if (task_pending) {
    recheck.bind(1, id).bind(2, now).run();
    return RetryOutcome::rechecking;
  }
  if (key_gone) return RetryOutcome::key_gone;
  requeue.bind(1, id).bind(2, now).run();
  return RetryOutcome::requeued;
}
}  // namespace

RetryOutcome JobStore::retry(std::int64_t id, std::int64_t now) {
  sql::Transaction tx(*db_);
  RetryOutcome o = retry_one(st_->retry_target, st_->requeue_job, st_->recheck_job, id, now);
  tx.commit();
  return o;
}

std::map<RetryOutcome, std::int64_t> JobStore::retry_all(JobState state, std::int64_t now) {
  std::map<RetryOutcome, std::int64_t> counts;
  sql::Transaction tx(*db_);
  std::vector<std::int64_t> ids;
  auto& sel = st_->ids_in_state;
  sel.bind(1, to_string(state));
  while (sel.step()) ids.push_back(sel.column_int(0));
  sel.reset();
  for (std::int64_t id : ids) {
    ++counts[retry_one(st_->retry_target, st_->requeue_job, st_->recheck_job, id, now)];
  }
  tx.commit();
  return counts;
}

CancelOutcome JobStore::cancel(std::int64_t id, std::int64_t now) {
  sql::Transaction tx(*db_);
  st_->cancel_job.bind(1, id).bind(2, now).run();
  CancelOutcome o = CancelOutcome::cancelled;
  if (db_->changes() == 0) {
    auto& e = st_->job_exists;
    e.bind(1, id);
    o = e.step() ? CancelOutcome::already_ended : CancelOutcome::not_found;
    e.reset();
  }
  int deleted = 0;
  if (o == CancelOutcome::cancelled) deleted = delete_secret(id);  // a terminal job keeps no key
  tx.commit();
  if (deleted) scrub_wal();
  return o;
}

bool JobStore::paused() {
  auto& g = st_->get_setting;
  g.bind(1, std::string_view("paused"));
  bool p = g.step() && g.column_text(0) == "true";
  g.reset();
  return p;
}

void JobStore::set_paused(bool paused) {
  sql::Transaction tx(*db_);
  st_->put_setting.bind(1, std::string_view("paused"))
      .bind(2, std::string_view(paused ? "true" : "false"))
      .run();
  tx.commit();
}

}  // namespace kpsd
