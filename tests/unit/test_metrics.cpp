#include "model/metrics.hpp"
#include "web/metrics_server.hpp"

#include <doctest/doctest.h>

using namespace kpsd;

TEST_CASE("the minute history keeps six hours - oldest first - and forgets a minute it reuses") {
  MinuteHistory h;
  const std::int64_t t0 = 1'800'000'000'000;  // a Unix ms time
  h.finished(JobState::succeeded, t0);
  h.finished(JobState::succeeded, t0 + 1000);
  h.finished(JobState::failed, t0 + 61'000);
  h.answered(true, t0 + 61'000);
  h.answered(false, t0 + 62'000);
  auto last = h.last(t0 + 61'000, 3);
  REQUIRE(last.size() == 3);
  CHECK(last[0].minute == t0 / 60000 - 1);  // empty, but present with its minute
  CHECK(last[0].succeeded == 0);
  CHECK(last[1].succeeded == 2);
  CHECK(last[2].failed == 1);
  CHECK(last[2].answers == 2);
  CHECK(last[2].throttled == 1);
  // Six hours later the same slot holds a new minute: the old counts are gone.
  const std::int64_t later = t0 + 360 * 60'000;
  h.finished(JobState::cancelled, later);
  auto now = h.last(later, 360);
  REQUIRE(now.size() == 360);
  CHECK(now.back().cancelled == 1);
  CHECK(now.back().succeeded == 0);
  CHECK(now.front().minute == later / 60000 - 359);
  CHECK(h.last(later, 1000).size() == 360);  // never more than it keeps
}

TEST_CASE("the start-up line names /metrics and the status page - an IPv6 host in brackets") {
  CHECK(served_at("127.0.0.1", 9464) ==
        "metrics on http://127.0.0.1:9464/metrics, status page on http://127.0.0.1:9464/");
  CHECK(served_at("::1", 9464) ==
        "metrics on http://[::1]:9464/metrics, status page on http://[::1]:9464/");
}
