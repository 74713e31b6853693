// The three readers of one Overview: stats JSON, the /metrics gauges and systemd's STATUS= line.
#include "control/overview.hpp"

#include <boost/json.hpp>

#include <doctest/doctest.h>

using namespace kpsd;

namespace {

Overview sample() {
  Overview o;
  o.counts = {{JobState::queued, 7}, {JobState::running, 2}, {JobState::succeeded, 40}};
  o.oldest_queued_due = 10'000;
  o.scheduler.in_flight = 2;
  o.scheduler.rate_per_second = 12.5;
  o.scheduler.outcomes_waiting = 3;
  return o;
}

}  // namespace

TEST_CASE("overview: one snapshot read alike by stats JSON and the metrics gauges") {
  Overview o = sample();
  auto j = stats_json(o, 12'500);
  CHECK(j.at("total").as_int64() == 49);
  CHECK(j.at("states").at("queued").as_int64() == 7);
  CHECK(j.at("in_flight").as_int64() == 2);
  CHECK(j.at("oldest_queued_ms").as_int64() == 2500);
  CHECK(j.at("blocked").is_null());
  CHECK(j.at("store").at("outcomes_waiting").as_int64() == 3);

  Metrics::Gauges g = metrics_gauges(o, 12'500);
  CHECK(g.jobs == o.counts);
  CHECK(g.jobs_known);
  CHECK(g.oldest_queued_age_s == doctest::Approx(2.5));
  CHECK(g.in_flight == 2);
  CHECK(g.rate_per_second == doctest::Approx(12.5));
  CHECK(g.outcomes_waiting == 3);
  CHECK_FALSE(g.blocked);
}

TEST_CASE("overview: a store that cannot be read and a block are said by all three") {
  Overview o = sample();
  o.read_problem = "database is locked";
  o.scheduler.blocked_reason = "TLS: certificate verify failed";
  o.scheduler.blocked_cause = "tls";
  auto j = stats_json(o, 12'500);
  CHECK(j.at("store").at("read_problem").as_string() == "database is locked");
  CHECK(j.at("blocked").at("cause").as_string() == "tls");
  Metrics::Gauges g = metrics_gauges(o, 12'500);
  CHECK_FALSE(g.jobs_known);
  CHECK(g.blocked);
  CHECK(g.blocked_cause == "tls");
  std::string line = status_line(o, false);
  CHECK(line.starts_with("STATUS=BLOCKED: TLS: certificate verify failed; "));
  CHECK(line.find("job counts unavailable") != std::string::npos);
}

TEST_CASE("overview: the STATUS= line puts what is wrong first") {
  Overview o = sample();
  CHECK(status_line(o, false) ==
        "STATUS=queued 7, running 2, retrying 0, delivered 0, succeeded 40, failed 0, "
        "cancelled 0; 2 in flight");
  CHECK(status_line(o, true).starts_with("STATUS=stopping; queued 7"));
  o.scheduler.paused = true;
  CHECK(status_line(o, true).starts_with("STATUS=PAUSED; "));
  o.scheduler.store_writable = false;
  o.scheduler.store_problem = "disk full";
  CHECK(
      status_line(o, false).starts_with("STATUS=STORE UNAVAILABLE (disk full); 3 outcomes "
                                        "waiting; "));
}

TEST_CASE("overview: whole rates are integers in the JSON text - never 4E1") {
  Overview o = sample();
  o.scheduler.configured_rate_per_second = 40;
  o.scheduler.rate_per_second = 40;
  o.scheduler.send_rate_per_second = 0;
  o.scheduler.throttled_share = 1;
  std::string text = boost::json::serialize(stats_json(o, 12'500));
  CHECK(text.find("\"configured_rate_per_second\":40,") != std::string::npos);
  CHECK(text.find("\"rate_per_second\":40,") != std::string::npos);
  CHECK(text.find("\"send_rate_per_second\":0,") != std::string::npos);
  CHECK(text.find("\"throttled_share\":1,") != std::string::npos);
  CHECK(text.find("E1") == std::string::npos);
  // A fraction stays the number it is.
  o.scheduler.rate_per_second = 12.5;
  auto j = stats_json(o, 12'500);
  CHECK(j.at("rate_per_second").as_double() == 12.5);
}
