// End to end: task polls get their share of a rate ceiling. Deliveries claimed ahead for the
// pace used to drain before any poll was claimed, so finished tasks waited (issue 18: 10 s
// late on average with 600 jobs at 40/s).
#include "e2e_rig.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <numeric>

using namespace kpsd;
using namespace kpsd::test;
using namespace std::chrono_literals;

TEST_CASE("under a 40 per second ceiling a finished task is noticed within about a poll") {
  // KPSD_POLL_LAG_JOBS=600 or 2000 for the figures (CI runs 300).
  const char* env = std::getenv("KPSD_POLL_LAG_JOBS");
  const int jobs = env ? std::atoi(env) : 300;
  Rig rig({.fake = {.task_duration = 3000ms},
           .config = {{"queue.rate_per_second", "40"},
                      {"queue.concurrency", "64"},
                      {"kps.poll_initial_delay_ms", "1000"},
                      {"kps.poll_interval_ms", "1000"},
                      {"kps.poll_timeout_ms", "600000"}}});
  rig.start();
  std::string ids;
  for (int i = 0; i < jobs; ++i) ids += "paced-" + std::to_string(i) + "\n";
  REQUIRE(rig.ctl({"enqueue", "--file", rig.dir().write("ids", ids)}).exit_code == 0);
  // kpsctl wait in rounds of 150 s (the rig gives one command 180 s); 2,000 jobs take ~4 min.
  int waited = -1;
  for (int round = 0; round < 1 + jobs / 300 && waited != 0; ++round)
    waited = rig.ctl({"wait", "--timeout", "150"}).exit_code;
  CHECK(waited == 0);

  // How late each job saw its task end: the job's end minus (its 202 + the task's 3 s).
  sql::Database db(rig.db_path(), sql::Database::Mode::read_only);
  sql::Statement s(db,
                   "SELECT j.updated_at - (a.finished_at + 3000) FROM jobs j JOIN attempts a "
                   "ON a.job_id = j.id AND a.http_status = 202 WHERE j.state = 'succeeded'");
  std::vector<double> late_ms;
  while (s.step()) late_ms.push_back(static_cast<double>(s.column_int(0)));
  REQUIRE(late_ms.size() == jobs);
  std::sort(late_ms.begin(), late_ms.end());
  double mean = std::accumulate(late_ms.begin(), late_ms.end(), 0.0) / late_ms.size();
  double p95 = late_ms[late_ms.size() * 95 / 100];
  MESSAGE("poll lag at 40/s, 3 s tasks, 1 s polls, "
          << jobs << " jobs: mean " << mean << " ms, p95 " << p95 << " ms, max " << late_ms.back()
          << " ms");
  CHECK(mean <= 2000);
  CHECK(p95 <= 3000);
  CHECK(rig.fake().violations().empty());
}

// A call that a look decides without sending gives its rate token back. While a Retry-After
// held every call, the one probe token went to a job whose earlier call was lost; its look
// found it too early to read the task lists (no call), and the rate controller waited for that
// probe's answer for its 2-minute timeout: every call held (CI, the mixed-fault batch).
TEST_CASE("a look that sends nothing during a Retry-After hold does not hold the calls") {
  // One slot: the lost call's retry is due first when the hold ends, so it gets the probe.
  Rig rig({.config = {{"queue.concurrency", "1"},
                      {"kps.request_timeout_ms", "3000"},
                      {"queue.backoff_initial_ms", "20"}}});
  rig.fake().set_behavior("lost-once", fake::dropped_connections(1));
  rig.fake().set_behavior("held-once", fake::error_answers(429, 1, "APIGW.0308", "1"));
  rig.start();
  // lost-once goes first and is lost; held-once's 429 holds every call for 1 s; when the hold
  // ends the probe token goes to lost-once (due long before), whose look must wait 3 s.
  REQUIRE(rig.ctl({"enqueue", "lost-once", "held-once"}).exit_code == 0);
  auto wait = rig.ctl({"wait", "--timeout", "30"});
  CHECK(wait.exit_code == 0);
  auto rows = read_jobs(rig.db_path());
  CHECK(rows["lost-once"].state == "succeeded");
  CHECK(rows["held-once"].state == "succeeded");
  CHECK(rig.fake().calls_for("held-once") == 2);
  CHECK(rig.stop() == 0);
}
