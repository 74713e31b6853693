// Jobs' keys sealed before SQLite sees them (lib/core/secret_box.hpp, issue 31).
#include "core/secret_box.hpp"
#include "store/job_store.hpp"
#include "store/sqlite.hpp"
#include "temp_dir.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

using namespace kpsd;

TEST_CASE("a sealed key opens with its box only - the stored bytes never hold it") {
  test::TempDir dir;
  std::string db = dir.file("jobs.db");
  SecretBox box = SecretBox::for_database(db);
  namespace fs = std::filesystem;
  REQUIRE(fs::exists(db + ".key"));
  CHECK(fs::file_size(db + ".key") == 32);
  CHECK((fs::status(db + ".key").permissions() & fs::perms::all) ==
        (fs::perms::owner_read | fs::perms::owner_write));
  const std::string key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n";
  std::string stored = box.seal(key);
  CHECK(SecretBox::sealed(stored));
  CHECK(stored.find("OPENSSH") == std::string::npos);
  CHECK(box.seal(key) != stored);  // a fresh nonce each time
  REQUIRE(box.open(stored));
  CHECK(box.open(stored)->reveal() == key);
  // The same file gives the same key (a restart); another database's key does not open it.
  CHECK(SecretBox::for_database(db).open(stored)->reveal() == key);
  CHECK_FALSE(SecretBox::for_database(dir.file("other.db")).open(stored));
  // A changed byte is refused (GCM's tag), and a plain value is not "sealed".
  std::string changed = stored;
  changed[changed.size() / 2] ^= 1;
  CHECK_FALSE(box.open(changed));
  CHECK_FALSE(SecretBox::sealed("hunter2"));
  // A key file that is not 32 bytes is refused, naming it.
  std::ofstream(dir.file("bad.db.key")) << "short";
  CHECK_THROWS_WITH_AS(SecretBox::for_database(dir.file("bad.db")),
                       doctest::Contains("bad.db.key does not hold 32 bytes"), std::runtime_error);
}

TEST_CASE("the store seals a job's key in job_secrets - and reads a row written before") {
  test::TempDir dir;
  std::string path = dir.file("jobs.db");
  JobStore store(path);
  const std::string key = "Pa55w0rd-sealed-3c1d";
  store.commands().enqueue(
      std::vector<NewJob>{NewJob{"s-1", std::nullopt, JobAuth{"password", Secret(key)}},
                          NewJob{"s-2", std::nullopt, JobAuth{"password", Secret(key)}}},
      1);
  {
    sql::Database db(path, sql::Database::Mode::read_only);
    sql::Statement s(db, "SELECT key FROM job_secrets");
    int rows = 0;
    while (s.step()) {
      ++rows;
      CHECK(s.column_text(0).find(key) == std::string::npos);
    }
    CHECK(rows == 2);
  }
  {
    // A row as kpsd wrote it before it sealed keys: the key itself.
    sql::Database db(path);
    db.exec("UPDATE job_secrets SET key = CAST('legacy-plain-key' AS BLOB) WHERE job_id = 2");
  }
  auto work = store.work_queue().claim_for_delivery(2, 2);
  REQUIRE(work.size() == 2);
  REQUIRE(work[0].auth);
  CHECK(work[0].auth->key.reveal() == key);
  REQUIRE(work[1].auth);
  CHECK(work[1].auth->key.reveal() == "legacy-plain-key");
}
