// How callers reach the job store: DbWorker::call hands a lambda the rooms its parameters name
// (store/db_worker.hpp), and rows are read by column name (sql::Statement::column_index).
#include "store/db_worker.hpp"
#include "store/job_store.hpp"
#include "store/sqlite.hpp"
#include "store_helpers.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include <doctest/doctest.h>

#include <stdexcept>

using namespace kpsd;
using namespace kpsd::test;
namespace net = boost::asio;

TEST_CASE("DbWorker::call hands a lambda the rooms it names - one or several") {
  DbWorker db(std::make_unique<JobStore>(":memory:"));
  net::io_context io;
  std::optional<JobState> state;
  bool paused = false;
  std::size_t claimed = 99;
  bool done = false;
  auto run = [&]() -> net::awaitable<void> {
    auto enqueue = [](JobCommands& c) {
      return c.enqueue(std::vector<NewJob>{job("rooms-1")}, 1000);
    };
    auto ids = co_await db.call(std::move(enqueue));
    REQUIRE(ids.size() == 1);
    // Two rooms in one call: one DB round trip, as the retry handler does.
    auto cancel_and_read = [id = ids[0].id](JobCommands& c, JobQueries& q) {
      c.cancel(id, 2000);
      return q.find(id).value_or(Job{}).state;
    };
    state = co_await db.call(std::move(cancel_and_read));
    co_await db.call([](BatchControls& b) { b.set_paused(true); });
    paused = co_await db.call([](BatchControls& b) { return b.paused(); });
    claimed = co_await db.call([](WorkQueue& q) { return q.claim_for_delivery(3000, 10).size(); });
    done = true;
  };
  net::co_spawn(io, run(), net::detached);
  io.run_for(std::chrono::seconds(10));
  CHECK(done);
  CHECK(state == JobState::cancelled);
  CHECK(paused);
  CHECK(claimed == 0);  // the only job was cancelled
  CHECK(db.schema_version() > 0);
}

TEST_CASE("a statement's columns are found by name - a missing one is a bug") {
  sql::Database db(":memory:");
  sql::Statement s(db, "SELECT 1 AS first, 2 AS second, 3 AS third");
  CHECK(s.column_index("first") == 0);
  CHECK(s.column_index("third") == 2);
  CHECK_THROWS_AS(s.column_index("fourth"), std::logic_error);
  REQUIRE(s.step());
  CHECK(s.column_int(s.column_index("second")) == 2);
  s.reset();
}
