// The job store's file: migrations, the application id, a file that is not kpsd's, the mode it is
// created with, secrets gone from it when their job ends, and the WAL's bound
// (store/job_store.cpp, store/migrations.cpp).
#include "core/clock.hpp"
#include "scheduling/job_policy.hpp"
#include "store/db_worker.hpp"
#include "store/job_store.hpp"
#include "store/migrations.hpp"
#include "store/sqlite.hpp"
#include "store_helpers.hpp"
#include "temp_dir.hpp"

#include <doctest/doctest.h>
#include <sqlite3.h>

#include <chrono>
#include <limits>
#include <sys/stat.h>
#include <thread>

using namespace kpsd;
using namespace kpsd::test;

TEST_CASE("migrations: a new database gets every migration in order once") {
  test::TempDir dir;
  std::string path = dir.file("jobs.db");
  int newest = embedded_migrations().back().version;
  {
    JobStore store(path);
    CHECK(store.schema_version() == newest);
  }
  CHECK(external_int(path, "PRAGMA user_version") == newest);
  CHECK(external_int(path,
                     "SELECT count(*) FROM sqlite_master WHERE name IN "
                     "('jobs','attempts','job_secrets')") == 3);
  {
    sql::Database db(path);
    sql::Statement s(db, "PRAGMA journal_mode");
    REQUIRE(s.step());
    CHECK(s.column_text(0) == "wal");
  }
  JobStore again(path);  // re-opening applies nothing and keeps the data
  CHECK(again.schema_version() == newest);
}

TEST_CASE("migrations: a failing migration leaves the database at the previous version") {
  sql::Database db(":memory:");
  const Migration good[] = {{1, "0001_a.sql", "CREATE TABLE a (x INT);"}};
  CHECK(apply_migrations(db, good) == 1);
  const Migration bad[] = {{1, "0001_a.sql", "CREATE TABLE a (x INT);"},
                           {2, "0002_b.sql", "CREATE TABLE b (y INT); SELECT * FROM nowhere;"}};
  CHECK_THROWS_WITH_AS(apply_migrations(db, bad), doctest::Contains("0002_b.sql"), sql::Error);
  CHECK(db.pragma_int("user_version") == 1);
  sql::Statement s(db, "SELECT count(*) FROM sqlite_master WHERE name = 'b'");
  REQUIRE(s.step());
  CHECK(s.column_int(0) == 0);  // the half-applied migration was rolled back
}

TEST_CASE("migrations: a database newer than this kpsd is refused") {
  sql::Database db(":memory:");
  db.exec("PRAGMA user_version = 999");
  const Migration one[] = {{1, "0001_a.sql", "CREATE TABLE a (x INT);"}};
  CHECK_THROWS_WITH(apply_migrations(db, one), doctest::Contains("newer than this kpsd"));
}

TEST_CASE("the database file is created private (0600)") {
  test::TempDir dir;
  std::string path = dir.file("jobs.db");
  JobStore store(path);
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
}

TEST_CASE("the store refuses a file that is not a kpsd database and leaves it as it was") {
  test::TempDir dir;
  // Another application's database, in rollback-journal mode.
  std::string other = dir.file("other.db");
  external_exec(other, "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)");
  std::string before = test::TempDir::slurp_file(other);
  try {
    JobStore store(other);
    FAIL("opened another application's database");
  } catch (const std::runtime_error& e) {
    std::string what = e.what();
    CHECK(what.find(other) != std::string::npos);
    CHECK(what.find("is not a kpsd database") != std::string::npos);
    CHECK(what.find("customers") != std::string::npos);
  }
  CHECK(test::TempDir::slurp_file(other) == before);  // byte for byte: no WAL switch
  CHECK_FALSE(std::filesystem::exists(other + "-wal"));

  std::string text = dir.write("notes.txt", "just some notes, not a database\n");
  CHECK_THROWS_WITH_AS(JobStore{text}, doctest::Contains("is not an SQLite database"),
                       std::runtime_error);
  CHECK(test::TempDir::slurp_file(text) == "just some notes, not a database\n");

  // Empty files and kpsd's own databases open; a new one carries kpsd's application id.
  std::string empty = dir.write("empty.db", "");
  { JobStore store(empty); }
  CHECK(external_int(empty, "PRAGMA application_id") == 1802531684);
  { JobStore again(empty); }
}

TEST_CASE("a kpsd database written before the application id is recognised and upgraded") {
  test::TempDir dir;
  std::string path = dir.file("old.db");
  {
    sql::Database db(path);
    auto all = embedded_migrations();
    apply_migrations(db, all.subspan(0, 3));  // as kpsd 0.1 with migrations 1-3 left it
    db.exec("INSERT INTO jobs (server_id) VALUES ('old-1')");
  }
  CHECK(external_int(path, "PRAGMA application_id") == 0);
  JobStore store(path);
  CHECK(store.schema_version() >= 4);
  CHECK(external_int(path, "PRAGMA application_id") == 1802531684);
  CHECK(store.queries().list({}).size() == 1);
}

TEST_CASE("the WAL shrinks back under its bound once a reader that held it for 16000 jobs closes") {
  test::TempDir dir;
  std::string path = dir.file("jobs.db");
  std::string wal = path + "-wal";
  auto store = std::make_unique<JobStore>(path);
  // A reader holding its snapshot, as an sqlite3 shell inside BEGIN does: no checkpoint can
  // restart the log meanwhile, so the WAL grows with every commit.
  auto reader = std::make_unique<sql::Database>(path);
  reader->exec("BEGIN");
  {
    sql::Statement count(*reader, "SELECT count(*) FROM jobs");
    REQUIRE(count.step());
  }
  for (int round = 0; round < 16; ++round) run_thousand_jobs(*store, round);
  std::int64_t grown = file_size(wal);
  MESSAGE("WAL after 16000 jobs under a reader: " << grown / 1024 << " KiB");
  REQUIRE(grown > JobStore::wal_size_limit);
  // Still held: the trim gives up at once and leaves the WAL as it is.
  CHECK(store->trim_wal() == grown);
  reader->exec("COMMIT");
  reader.reset();
  // Nothing more is written: the DB thread's periodic trim alone shrinks it.
  DbWorker worker(std::move(store), std::chrono::milliseconds(20));
  for (int i = 0; i < 500 && file_size(wal) > JobStore::wal_size_limit; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  CHECK(file_size(wal) <= JobStore::wal_size_limit);
}

TEST_CASE(
    "one unfinished job per server: migration 0007 cancels later duplicates naming the first") {
  test::TempDir dir;
  std::string path = dir.file("dups.db");
  {
    sql::Database db(path);
    apply_migrations(db, embedded_migrations().subspan(0, 6));  // as kpsd with 1-6 left it
    db.exec(
        "INSERT INTO jobs (server_id) VALUES ('dup-A'), ('dup-A'), ('solo'), ('dup-A');"
        "INSERT INTO jobs (server_id, state) VALUES ('dup-A', 'succeeded');"
        "INSERT INTO jobs (server_id, state) VALUES ('dup-B', 'failed'), ('dup-B', 'retrying'),"
        " ('dup-B', 'delivered');");
  }
  JobStore store(path);
  CHECK(store.schema_version() >= 7);
  auto jobs = store.queries().list({});
  REQUIRE(jobs.size() == 8);
  CHECK(jobs[0].state == JobState::queued);  // dup-A, the oldest, stays
  CHECK(jobs[1].state == JobState::cancelled);
  CHECK(jobs[1].error_msg == "duplicate of job 1");
  CHECK(jobs[2].state == JobState::queued);  // solo
  CHECK(jobs[3].error_msg == "duplicate of job 1");
  CHECK(jobs[4].state == JobState::succeeded);  // finished jobs are history: untouched
  CHECK(jobs[5].state == JobState::failed);
  CHECK(jobs[6].state == JobState::retrying);  // dup-B's oldest unfinished job
  CHECK(jobs[7].state == JobState::cancelled);
  CHECK(jobs[7].error_msg == "duplicate of job 7");
}

TEST_CASE("migration 0008 keeps every id and attempt and makes ids never reused") {
  test::TempDir dir;
  std::string path = dir.file("old.db");
  {
    sql::Database db(path);
    db.exec("PRAGMA foreign_keys = ON");
    apply_migrations(db, embedded_migrations().subspan(0, 7));  // as kpsd with 1-7 left it
    db.exec(
        "INSERT INTO batches (id, name) VALUES (5, 'five');"
        "INSERT INTO jobs (id, server_id, state, batch_id) VALUES (3, 's3', 'failed', 5),"
        " (9, 's9', 'queued', 5);"
        "INSERT INTO attempts (job_id, n, started_at, error_msg) VALUES (3, 1, 7, 'gone'),"
        " (9, 1, 8, 'outcome lost: daemon stopped');"
        "INSERT INTO batch_jobs (batch_id, job_id) VALUES (5, 9);");
  }
  JobStore store(path);
  CHECK(store.schema_version() >= 8);
  auto jobs = store.queries().list({});
  REQUIRE(jobs.size() == 2);
  CHECK(jobs[0].id == 3);
  CHECK(jobs[1].id == 9);
  CHECK(store.queries().attempts_of(3).at(0).error_msg == "gone");
  CHECK(store.queries().attempts_of(9).at(0).error_msg == "outcome lost: daemon stopped");
  CHECK(external_int(path, "SELECT count(*) FROM batch_jobs WHERE job_id = 9") == 1);
  CHECK(external_int(path, "SELECT n FROM job_counts WHERE state = 'queued'") == 1);
  // Foreign keys hold after the rebuild: deleting a job still takes its attempts with it.
  CHECK(external_int(path, "PRAGMA foreign_keys") == 0);  // (a fresh connection's default)
  CHECK(store.pruning().prune_finished(std::numeric_limits<std::int64_t>::max(), 10) == 1);
  CHECK(external_int(path, "SELECT count(*) FROM attempts WHERE job_id = 3") == 0);
  external_exec(path, "DELETE FROM jobs WHERE id = 9");
  auto next = store.commands().enqueue(std::vector<NewJob>{job("s10")}, 0, {});
  CHECK(next.jobs.at(0).id == 10);
  CHECK(next.batch_id == 6);
}

TEST_CASE("secrets are deleted from the file when the job ends") {
  test::TempDir dir;
  std::string path = dir.file("jobs.db");
  JobStore store(path);
  std::vector<NewJob> batch{NewJob{"srv-s", std::nullopt, JobAuth{"keypair", Secret("KEY")}}};
  store.commands().enqueue(batch, 0);
  CHECK(external_int(path, "SELECT count(*) FROM job_secrets") == 1);
  auto w = store.work_queue().claim_for_delivery(0, 1);
  std::vector<AttemptFinish> fs{finish(w[0], JobState::succeeded, 5)};
  store.work_queue().finish_attempts(fs);
  CHECK(external_int(path, "SELECT count(*) FROM job_secrets") == 0);
}
