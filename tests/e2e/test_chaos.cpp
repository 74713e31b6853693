// Chaos: a batch with every kind of fault, kpsd killed with SIGKILL at random moments and
// restarted, and rows inserted with the sqlite3 shell meanwhile. Nothing may be lost, every job
// must end in the state its faults call for, and every server called more often than its
// faults explain must show an "outcome lost" attempt for each extra call. Tasks run 4 s and the
// fake lists them as KPS does, so a call in flight at a kill is found by the look before
// sending again and adopted: at most one double delivery per kill (docs/failure-modes.md,
// "Effectively once").
//
// CI runs a short form. The long form, run before a release:
//   KPSD_CHAOS_JOBS=20000 KPSD_CHAOS_KILLS=12 build/tests/kpsd_e2e_tests -tc='chaos*'
// (KPSD_CHAOS_SEED=N repeats a run's kill times.)
#include "e2e_rig.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <random>

using namespace kpsd;
using namespace kpsd::test;
using namespace std::chrono_literals;

namespace {

struct ChaosGroup {
  std::string name;
  fake::Behavior behavior;
  std::string final_state;
  std::int64_t tasks;  // tasks the fake must create for one server (more = double delivery)
  std::string error_code{};
};

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : fallback;
}

}  // namespace

TEST_CASE("chaos: faults - SIGKILLs at random moments - sqlite3 inserts: nothing lost") {
  const int job_count = env_int("KPSD_CHAOS_JOBS", 3000);
  const int kills = env_int("KPSD_CHAOS_KILLS", 3);
  const unsigned seed = static_cast<unsigned>(env_int("KPSD_CHAOS_SEED", std::random_device{}()));
  constexpr int concurrency = 32;
  MESSAGE("chaos: " << job_count << " jobs, " << kills << " kills, seed " << seed);
  std::mt19937 rng(seed);

  const std::vector<ChaosGroup> groups{
      {"ok", {}, "succeeded", 1},
      {"ok2", {}, "succeeded", 1},
      {"ok3", {}, "succeeded", 1},
      {"accepted-failed", fake::failed_deliveries(2), "succeeded", 1},
      {"server-error", fake::error_answers(500, 2, "KPS.0003"), "succeeded", 1},
      {"unavailable", fake::error_answers(503, 1), "succeeded", 1},
      {"reset", fake::dropped_connections(1), "succeeded", 1},
      {"garbage", fake::garbage_bodies(1), "succeeded", 1},
      {"slow", fake::slow_answers(200ms), "succeeded", 1},
      {"bad-request", fake::error_answers(400, -1, "KPS.4016"), "failed", 0, "KPS.4016"},
      {"task-failed", fake::failed_tasks(1), "succeeded", 2},
  };
  // 429s are few: each one cuts the shared rate for everyone, and one with Retry-After holds
  // every call for that long (as a gateway's would).
  const ChaosGroup throttled_retry_after{
      "throttled-retry-after", fake::error_answers(429, 1, "APIGW.0308", "1"), "succeeded", 1};
  const ChaosGroup throttled_plain{"throttled-plain", fake::error_answers(429, 1, "APIGW.0308"),
                                   "succeeded", 1};
  Rig rig({.fake = {.task_duration = 4s, .call_delay = 2ms},
           .config = {{"queue.concurrency", std::to_string(concurrency)},
                      {"queue.max_attempts", "10"},
                      {"queue.rate_per_second", "3000"},
                      {"kps.poll_interval_ms", "500"},
                      // The look waits for the lost call's deadline; tasks outlast it.
                      {"kps.request_timeout_ms", "1000"}}});
  std::map<std::string, const ChaosGroup*> expected;
  std::string ids;
  for (int i = 0; i < job_count; ++i) {
    const ChaosGroup& g = i % 1000 == 150  ? throttled_retry_after
                          : i % 300 == 299 ? throttled_plain
                                           : groups[static_cast<std::size_t>(i) % groups.size()];
    std::string id = g.name + "-" + std::to_string(i);
    if (g.behavior.error_status || g.behavior.accepted_failed_times || g.behavior.drop_times ||
        g.behavior.garbage_times || g.behavior.delay.count() || g.behavior.task_failed_times) {
      rig.fake().set_behavior(id, g.behavior);
    }
    expected[id] = &g;
    ids += id + "\n";
  }
  rig.start();
  auto enq = rig.ctl({"enqueue", "--file", rig.dir().write("chaos.txt", ids)});
  REQUIRE_MESSAGE(enq.exit_code == 0, enq.err);

  const ChaosGroup plain{"sql", {}, "succeeded", 1};
  std::uniform_int_distribution<int> pause_ms(200, 1500);
  std::chrono::steady_clock::duration slowest_restart{};
  for (int k = 0; k < kills; ++k) {
    // Rows from another process, as an operator's script would add them.
    std::string sql =
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 50) "
        "INSERT INTO jobs (server_id) SELECT 'sql-" +
        std::to_string(k) + "-' || x FROM n;";
    auto inserted = run_command({"/usr/bin/sqlite3", rig.db_path(), ".timeout 10000", sql},
                                rig.dir().path().string());
    CHECK_MESSAGE(inserted.exit_code == 0, inserted.err);
    for (int x = 1; x <= 50; ++x)
      expected["sql-" + std::to_string(k) + "-" + std::to_string(x)] = &plain;

    std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms(rng)));
    rig.daemon().signal(SIGKILL);
    auto killed = std::chrono::steady_clock::now();
    REQUIRE(rig.daemon().wait(10s).has_value());
    rig.start();
    slowest_restart = std::max(slowest_restart, std::chrono::steady_clock::now() - killed);
  }
  auto wait = rig.ctl({"wait", "--timeout", "600"});
  CHECK(wait.exit_code == 1);  // the 400s fail by design

  auto rows = read_jobs(rig.db_path());
  int lost = 0, wrong_state = 0, doubles = 0, unexplained = 0, lost_outcomes = 0, open = 0;
  int adopted = 0, sent_again = 0, failed_found = 0;
  for (const auto& [id, g] : expected) {
    auto it = rows.find(id);
    if (it == rows.end()) {
      ++lost;
      continue;
    }
    const JobRow& row = it->second;
    if (row.state != g->final_state || row.error_code != g->error_code) {
      ++wrong_state;
      MESSAGE(id << ": " << row.state << " " << row.error_code << " " << row.error_msg
                 << "; expected " << g->final_state);
    }
    int lost_here = 0;
    for (const auto& a : read_attempts(rig.db_path(), row.id)) {
      lost_here += a.error_msg == "outcome lost: daemon stopped";
      open += a.finished_at == 0;
      adopted += a.look.starts_with("outcome unknown; adopted running task");
      sent_again += a.look.ends_with("sending again");
      failed_found += a.look.find("failed") != std::string::npos;
    }
    lost_outcomes += lost_here;
    std::int64_t extra = rig.fake().accepted_for(id) - g->tasks;
    if (extra > 0) doubles += static_cast<int>(extra);
    if (extra > 0 && doubles <= 10) {  // the first few, to see why the look missed them
      std::string looks;
      for (const auto& a : read_attempts(rig.db_path(), row.id))
        looks += " [" + std::to_string(a.n) + " " + a.error_msg + " | " + a.look + "]";
      MESSAGE(id << ": " << rig.fake().accepted_for(id) << " tasks;" << looks);
    }
    if (extra > lost_here) {
      ++unexplained;
      MESSAGE(id << ": " << extra << " extra deliveries, " << lost_here
                 << " outcome-lost attempts");
    }
  }
  MESSAGE("chaos figures: "
          << expected.size() << " jobs, " << kills << " SIGKILLs: " << lost << " lost, "
          << wrong_state << " in the wrong terminal state, " << doubles << " double deliveries, "
          << lost_outcomes << " outcome-lost attempts, " << unexplained << " doubles unexplained; "
          << double(doubles) / kills << " doubles per kill; looks: " << adopted << " adopted, "
          << failed_found << " failed task found, " << sent_again
          << " sent again (not found); slowest restart "
          << std::chrono::duration_cast<std::chrono::milliseconds>(slowest_restart).count()
          << " ms");
  CHECK(rows.size() == expected.size());
  CHECK(lost == 0);
  CHECK(wrong_state == 0);
  CHECK(unexplained == 0);
  CHECK(open == 0);
  CHECK(doubles <= kills);  // the look adopts what a killed call started
  CHECK(rig.fake().violations().empty());
}
