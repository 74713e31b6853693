#include "store/job_store.hpp"

#include "core/clock.hpp"
#include "core/secret_box.hpp"
#include "store/brake_room.hpp"
#include "store/migrations.hpp"
#include "store/sqlite.hpp"
#include "store/store_connection.hpp"

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

JobStore::JobStore(const std::string& path) : path_(path) {
  check_is_kpsd_database_file(path);
  create_private_file(path);
  SecretBox box = SecretBox::for_database(path);
  auto db = std::make_unique<sql::Database>(path);
  db->exec("PRAGMA busy_timeout = " + std::to_string(busy_timeout_ms));
  check_is_kpsd_database(*db, path);
  // WAL: readers (sqlite3 by hand, later kpsctl) never block the writer. synchronous=FULL: a
  // committed transition survives power loss, not only a crash of kpsd.
  db->exec("PRAGMA journal_mode = WAL");
  db->exec("PRAGMA synchronous = FULL");
  // Debian's SQLite already defaults to it; say it so the guarantee does not depend on the build.
  db->exec("PRAGMA secure_delete = ON");
  // A checkpoint that restarts the log truncates the WAL to this (by default it never shrinks).
  db->exec("PRAGMA journal_size_limit = " + std::to_string(wal_size_limit));
  // Migrations run with foreign keys off, as SQLite's table-rebuild procedure needs (0008's DROP
  // TABLE would otherwise cascade to every attempt); they are on for everything after.
  schema_version_ = apply_migrations(*db, embedded_migrations());
  db->exec("PRAGMA foreign_keys = ON");
  connection_ = std::make_unique<StoreConnection>(std::move(db), std::move(box));
  brakes_ = std::make_unique<BrakeRoom>(*connection_);
  work_queue_ = std::make_unique<WorkQueue>(*connection_, *brakes_);
  commands_ = std::make_unique<JobCommands>(*connection_, *brakes_);
  queries_ = std::make_unique<JobQueries>(*connection_);
  batch_controls_ = std::make_unique<BatchControls>(*connection_, *brakes_);
  pruning_ = std::make_unique<Pruning>(*connection_);
}

JobStore::~JobStore() = default;

std::shared_ptr<const JobEndings> JobStore::endings() const noexcept {
  return connection_->endings();
}

std::int64_t JobStore::trim_wal() {
  if (path_.empty() || path_ == ":memory:") return 0;
  struct stat st {};
  std::string wal = path_ + "-wal";
  if (::stat(wal.c_str(), &st) != 0) return 0;
  if (st.st_size <= wal_size_limit) return st.st_size;
  // No busy wait: a reader holding an old snapshot makes the checkpoint report "busy" at once
  // rather than stall the DB thread (and every call queued behind it) for busy_timeout.
  connection_->db().exec("PRAGMA busy_timeout = 0");
  try {
    connection_->db().exec("PRAGMA wal_checkpoint(TRUNCATE)");
  } catch (const sql::Error&) {
  }
  connection_->db().exec("PRAGMA busy_timeout = " + std::to_string(busy_timeout_ms));
  return ::stat(wal.c_str(), &st) == 0 ? st.st_size : 0;
}

}  // namespace kpsd
