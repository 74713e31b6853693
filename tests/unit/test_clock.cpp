// kpsd's clock (lib/core/clock.hpp): Unix ms that follow the monotonic clock, and the rule for
// saying a wall-clock step once.
#include "core/clock.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <thread>

using namespace kpsd;

TEST_CASE("kpsd's clock reads Unix ms near the wall clock and never goes back") {
  using namespace std::chrono;
  std::int64_t wall = duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
  std::int64_t a = unix_ms();
  CHECK(std::llabs(a - wall) < 5000);  // anchored to the wall clock (no step in a test run)
  std::int64_t previous = a;
  for (int i = 0; i < 1000; ++i) {
    std::int64_t t = unix_ms();
    CHECK(t >= previous);
    previous = t;
  }
  std::this_thread::sleep_for(20ms);
  CHECK(unix_ms() - a >= 20);
  CHECK(std::llabs(wall_clock_step_ms()) < 1000);
}

TEST_CASE("a wall-clock step is said once - again only when it changes by the threshold") {
  ClockStepReport report(2000);
  CHECK_FALSE(report.should_report(0));
  CHECK_FALSE(report.should_report(1500));     // slews and small steps: noise
  CHECK(report.should_report(-600000));        // stepped back 10 min
  CHECK_FALSE(report.should_report(-600300));  // the same step, read again
  CHECK(report.should_report(3000000));        // then forward past it
  CHECK_FALSE(report.should_report(2999000));
  CHECK(report.should_report(0));  // back in step: said too
  CHECK_FALSE(report.should_report(10));
}
