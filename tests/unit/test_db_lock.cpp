#include "result_strings.hpp"
#include "store/db_lock.hpp"
#include "temp_dir.hpp"

#include <doctest/doctest.h>

#include <unistd.h>

using namespace kpsd;

TEST_CASE("one lock per database: a second taker is told the holder's pid and lock file") {
  test::TempDir dir;
  std::string db = dir.file("jobs.db");
  {
    auto first = DatabaseLock::acquire(db);
    REQUIRE_MESSAGE(first.has_value(), (first ? "" : first.error().message));
    CHECK(first->path() == db + ".lock");
    // flock locks belong to the open file description: a second open in this process
    // conflicts just as a second kpsd would.
    auto second = DatabaseLock::acquire(db);
    REQUIRE_FALSE(second.has_value());
    CHECK(second.error().held_by_other);
    const std::string& error = second.error().message;
    CHECK(error.find(db + ".lock") != std::string::npos);
    CHECK(error.find("pid " + std::to_string(::getpid())) != std::string::npos);
  }  // the first is released with its descriptor
  auto third = DatabaseLock::acquire(db);
  CHECK(third.has_value());

  auto nowhere = DatabaseLock::acquire(dir.file("no-such-folder/jobs.db"));
  REQUIRE_FALSE(nowhere.has_value());
  CHECK_FALSE(nowhere.error().held_by_other);
  CHECK(nowhere.error().message.find("no-such-folder/jobs.db.lock") != std::string::npos);
}
