#include "store/db_lock.hpp"
#include "temp_dir.hpp"

#include <doctest/doctest.h>

#include <unistd.h>

using namespace kpsd;

TEST_CASE("one lock per database: a second taker is told the holder's pid and lock file") {
  test::TempDir dir;
  std::string db = dir.file("jobs.db");
  std::string error;
  bool held = false;
  auto first = DatabaseLock::acquire(db, error, held);
  REQUIRE_MESSAGE(first.has_value(), error);
  CHECK(first->path() == db + ".lock");
  // flock locks belong to the open file description: a second open in this process conflicts
  // just as a second kpsd would.
  auto second = DatabaseLock::acquire(db, error, held);
  CHECK_FALSE(second.has_value());
  CHECK(held);
  CHECK(error.find(db + ".lock") != std::string::npos);
  CHECK(error.find("pid " + std::to_string(::getpid())) != std::string::npos);
  first.reset();  // released with the descriptor
  auto third = DatabaseLock::acquire(db, error, held);
  CHECK(third.has_value());

  auto nowhere = DatabaseLock::acquire(dir.file("no-such-folder/jobs.db"), error, held);
  CHECK_FALSE(nowhere.has_value());
  CHECK_FALSE(held);
  CHECK(error.find("no-such-folder/jobs.db.lock") != std::string::npos);
}
