#include "store/job_store.hpp"

#include "core/clock.hpp"
#include "core/secret_box.hpp"
#include "store/job_store_rooms.hpp"
#include "store/migrations.hpp"
#include "store/sqlite.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <stdexcept>
#include <sys/stat.h>
#include <unistd.h>

namespace kpsd {

namespace {

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

// How long a write waits for a lock held by another writer (an sqlite3 shell inserting jobs):
// past it the write fails, and the scheduler keeps its outcomes and tries again, so a short
// wait keeps the DB thread free to answer kpsctl during a long lock.
constexpr int busy_timeout_ms = 1000;

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

JobStore::Upkeep::Upkeep(sql::Database& db)
    : delete_secret(db, "DELETE FROM job_secrets WHERE job_id = ?1"),
      // In id order through jobs_state: the oldest jobs have the lowest ids, so a chunk is
      // found near the start of each state's range. There is no index on the end time: it
      // would cost every job an index write as it ends (a quarter of the raw throughput).
      // ?3 a state, ?4 a batch and ?5..?6 its id range (0006): each NULL when not filtered.
      select_prunable(db,
                      "SELECT id FROM jobs WHERE state IN ('succeeded','failed','cancelled') "
                      "AND updated_at < ?1 AND (?3 IS NULL OR state = ?3) AND (?4 IS NULL OR "
                      "(id BETWEEN ?5 AND ?6 AND batch_id = ?4)) LIMIT ?2"),
      count_prunable(db,
                     "SELECT coalesce(batch_id, 0), state, count(*) FROM jobs "
                     "WHERE state IN ('succeeded','failed','cancelled') AND updated_at < ?1 "
                     "AND (?3 IS NULL OR state = ?3) AND (?4 IS NULL OR "
                     "(id BETWEEN ?5 AND ?6 AND batch_id = ?4)) GROUP BY 1, 2"),
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

JobStore::JobStore(const std::string& path) : path_(path) {
  check_is_kpsd_database_file(path);
  create_private_file(path);
  box_ = std::make_unique<SecretBox>(SecretBox::for_database(path));
  db_ = std::make_unique<sql::Database>(path);
  db_->exec("PRAGMA busy_timeout = " + std::to_string(busy_timeout_ms));
  check_is_kpsd_database(*db_, path);
  // WAL: readers (sqlite3 by hand, later kpsctl) never block the writer. synchronous=FULL: a
  // committed transition survives power loss, not only a crash of kpsd.
  db_->exec("PRAGMA journal_mode = WAL");
  db_->exec("PRAGMA synchronous = FULL");
  // Debian's SQLite already defaults to it; say it so the guarantee does not depend on the build.
  db_->exec("PRAGMA secure_delete = ON");
  // A checkpoint that restarts the log truncates the WAL to this (by default it never shrinks).
  db_->exec("PRAGMA journal_size_limit = " + std::to_string(wal_size_limit));
  // Migrations run with foreign keys off, as SQLite's table-rebuild procedure needs (0008's DROP
  // TABLE would otherwise cascade to every attempt); they are on for everything after.
  schema_version_ = apply_migrations(*db_, embedded_migrations());
  db_->exec("PRAGMA foreign_keys = ON");
  count_endings();
  upkeep_ = std::make_unique<Upkeep>(*db_);
  lifecycle_ = std::make_unique<Lifecycle>(*db_);
  commands_ = std::make_unique<Commands>(*db_);
  queries_ = std::make_unique<Queries>(*db_);
  batches_ = std::make_unique<BatchRoom>(*db_);
}

JobStore::~JobStore() = default;

// Every statement that ends jobs tells note_ended() how many rows it changed; the tally counts
// once its transaction commits (job_endings.hpp), and is dropped when it rolls back.
void JobStore::count_endings() {
  endings_ = std::make_shared<JobEndings>();
  db_->on_transaction_end([this](bool committed) {
    if (committed && ending_now_ != JobEndings::Tally{})
      endings_->committed(ending_now_, unix_ms());
    ending_now_ = {};
  });
}

void JobStore::note_ended(JobState state, std::int64_t jobs) {
  std::size_t i = JobEndings::index(state);
  if (i < ending_now_.size() && jobs > 0) ending_now_[i] += static_cast<std::uint64_t>(jobs);
}

int JobStore::delete_secret(std::int64_t job_id) {
  upkeep_->delete_secret.bind(1, job_id).run();
  return db_->changes();
}

std::int64_t JobStore::trim_wal() {
  if (path_.empty() || path_ == ":memory:") return 0;
  struct stat st {};
  std::string wal = path_ + "-wal";
  if (::stat(wal.c_str(), &st) != 0) return 0;
  if (st.st_size <= wal_size_limit) return st.st_size;
  // No busy wait: a reader holding an old snapshot makes the checkpoint report "busy" at once
  // rather than stall the DB thread (and every call queued behind it) for busy_timeout.
  db_->exec("PRAGMA busy_timeout = 0");
  try {
    db_->exec("PRAGMA wal_checkpoint(TRUNCATE)");
  } catch (const sql::Error&) {
  }
  db_->exec("PRAGMA busy_timeout = " + std::to_string(busy_timeout_ms));
  return ::stat(wal.c_str(), &st) == 0 ? st.st_size : 0;
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

void JobStore::bind_prune_filter(sql::Statement& s, std::int64_t before,
                                 const PruneFilter& filter) {
  s.bind(1, before);
  if (filter.state) s.bind(3, to_string(*filter.state));
  if (filter.batch_id) {
    auto [first, last] = batch_range(*filter.batch_id);
    s.bind(4, *filter.batch_id).bind(5, first).bind(6, last);
  }
}

std::map<std::pair<std::int64_t, JobState>, std::int64_t> JobStore::count_prunable(
    std::int64_t before, const PruneFilter& filter) {
  std::map<std::pair<std::int64_t, JobState>, std::int64_t> out;
  sql::Transaction tx(*db_, sql::Transaction::Kind::deferred);
  auto& s = upkeep_->count_prunable;
  bind_prune_filter(s, before, filter);
  while (s.step()) {
    if (auto state = parse_job_state(s.column_text(1))) {
      out[{s.column_int(0), *state}] = s.column_int(2);
    }
  }
  s.reset();
  tx.commit();
  return out;
}

std::int64_t JobStore::prune_finished(std::int64_t before, std::int64_t limit,
                                      const PruneFilter& filter) {
  sql::Transaction tx(*db_);
  std::vector<std::int64_t> ids;
  auto& sel = upkeep_->select_prunable;
  bind_prune_filter(sel, before, filter);
  sel.bind(2, limit);
  while (sel.step()) ids.push_back(sel.column_int(0));
  sel.reset();
  for (std::int64_t id : ids) upkeep_->delete_job.bind(1, id).run();
  upkeep_->delete_empty_batches.bind(1, before).run();
  tx.commit();
  return static_cast<std::int64_t>(ids.size());
}

bool JobStore::paused() {
  auto& g = upkeep_->get_setting;
  g.bind(1, std::string_view("paused"));
  bool p = g.step() && g.column_text(0) == "true";
  g.reset();
  return p;
}

void JobStore::set_paused(bool paused) {
  sql::Transaction tx(*db_);
  upkeep_->put_setting.bind(1, std::string_view("paused"))
      .bind(2, std::string_view(paused ? "true" : "false"))
      .run();
  tx.commit();
}

}  // namespace kpsd
