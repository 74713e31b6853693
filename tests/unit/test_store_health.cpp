#include "store/store_health.hpp"

#include <doctest/doctest.h>

using namespace kpsd;
using W = StoreHealth::Writer;
using C = StoreHealth::Change;

TEST_CASE("store health: an outage is reported once and its recovery once") {
  StoreHealth h;
  CHECK(h.writable());
  CHECK(h.failed(W::outcomes, "database is locked", 1000) == C::went_down);
  CHECK_FALSE(h.writable());
  CHECK(h.failing(W::outcomes));
  CHECK_FALSE(h.failing(W::claim));
  // More failures of either writer during the same outage say nothing new.
  CHECK(h.failed(W::outcomes, "database is locked", 1200) == C::none);
  CHECK(h.failed(W::claim, "disk I/O error", 1300) == C::none);
  CHECK(h.problem() == "disk I/O error");
  CHECK(h.down_since_ms() == 1000);
  // Writable only when both writers have committed again.
  CHECK(h.succeeded(W::claim, 1400) == C::none);
  CHECK_FALSE(h.writable());
  CHECK(h.succeeded(W::outcomes, 3500) == C::recovered);
  CHECK(h.writable());
  CHECK(h.problem().empty());
  CHECK(h.last_outage_ms() == 2500);
  CHECK(h.outages() == 1);
  CHECK(h.succeeded(W::outcomes, 3600) == C::none);
  CHECK(h.failed(W::claim, "database or disk is full", 4000) == C::went_down);
  CHECK(h.outages() == 2);
}

TEST_CASE("store health: retries back off from 100 ms to 2 s and start over after recovery") {
  StoreHealth h;
  h.failed(W::claim, "x", 0);
  CHECK(h.retry_delay() == std::chrono::milliseconds(100));
  h.failed(W::claim, "x", 0);
  CHECK(h.retry_delay() == std::chrono::milliseconds(200));
  for (int i = 0; i < 20; ++i) h.failed(W::claim, "x", 0);
  CHECK(h.retry_delay() == std::chrono::milliseconds(2000));
  h.succeeded(W::claim, 0);
  h.failed(W::claim, "x", 0);
  CHECK(h.retry_delay() == std::chrono::milliseconds(100));
}

TEST_CASE("store health: only a malformed file is fatal") {
  CHECK(is_malformed_database(11));                 // SQLITE_CORRUPT
  CHECK(is_malformed_database(26));                 // SQLITE_NOTADB
  CHECK(is_malformed_database(11 | 1 << 8));        // SQLITE_CORRUPT_VTAB
  CHECK_FALSE(is_malformed_database(5));            // SQLITE_BUSY
  CHECK_FALSE(is_malformed_database(13));           // SQLITE_FULL
  CHECK_FALSE(is_malformed_database(10));           // SQLITE_IOERR
  CHECK_FALSE(is_malformed_database(10 | 3 << 8));  // SQLITE_IOERR_WRITE
}
