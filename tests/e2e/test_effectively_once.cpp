// Effectively once (docs/failure-modes.md): before a job whose previous call has an unknown outcome
// is sent again, kpsd looks for its server's task in KPS's running-task and failed-task lists and
// adopts what it finds; a task that ends FAILED_* has its own small budget; the failed task's
// reason is found wherever the list has it. The fake lists tasks as KPS does: running ones capped
// at 1,000, failed ones oldest first behind older failures of other servers.
#include "e2e_rig.hpp"

#include <doctest/doctest.h>

using namespace kpsd;
using namespace kpsd::test;
using namespace std::chrono_literals;

TEST_CASE("a call in flight at a SIGKILL: after the restart the job adopts its running task") {
  Rig rig({.fake = {.task_duration = 8s}});
  fake::Behavior slow_relay;  // the task exists at once; its answer comes 5 s later
  slow_relay.answer_delay = 5s;
  slow_relay.answer_delay_times = 1;
  rig.fake().set_behavior("adopt-me", slow_relay);
  rig.start();
  auto enq = rig.ctl({"enqueue", "adopt-me"});
  REQUIRE(enq.exit_code == 0);
  wait_until([&] { return rig.fake().accepted_for("adopt-me") == 1; }, 10s, "the task");
  rig.daemon().signal(SIGKILL);  // its call is in flight: the answer never arrives
  REQUIRE(rig.daemon().wait(10s).has_value());
  rig.start();
  auto wait = rig.ctl({"wait", "--batch", Rig::batch_of(enq), "--timeout", "60"});
  CHECK_MESSAGE(wait.exit_code == 0, wait.out << wait.err << rig.log());

  auto row = read_jobs(rig.db_path()).at("adopt-me");
  CHECK(row.state == "succeeded");
  CHECK(rig.fake().calls_for("adopt-me") == 1);  // one call in total: no second unbind
  CHECK(row.task_id == "fake-task-1");
  auto attempts = read_attempts(rig.db_path(), row.id);
  REQUIRE(attempts.size() == 1);  // the lost call; the adoption made no call
  CHECK(attempts[0].error_msg == "outcome lost: daemon stopped");
  CHECK(attempts[0].look == "outcome unknown; adopted running task fake-task-1");
  CHECK(rig.fake().running_task_lookups() >= 1);
  auto show = rig.ctl({"show", std::to_string(row.id)});
  CHECK(show.out.find("adopted running task fake-task-1") != std::string::npos);
  CHECK(rig.fake().violations().empty());
}

TEST_CASE("a task that always ends FAILED_UNBIND: 2 calls and the job fails with its reason") {
  Rig rig({.fake = {.task_duration = 50ms}});
  rig.fake().set_behavior("always-fails", fake::failed_tasks(-1));
  rig.start();
  auto enq = rig.ctl({"enqueue", "always-fails"});
  REQUIRE(enq.exit_code == 0);
  // By batch: a bare wait would not count a job that failed before it started.
  auto wait = rig.ctl({"wait", "--batch", Rig::batch_of(enq), "--timeout", "60"});
  CHECK(wait.exit_code == 1);  // a job failed
  auto row = read_jobs(rig.db_path()).at("always-fails");
  CHECK(row.state == "failed");
  CHECK(rig.fake().calls_for("always-fails") == 2);  // task_failure_retries = 1 by default
  CHECK(row.error_code == "KPS.0003");
  CHECK(row.error_msg ==
        "task fake-task-2 ended FAILED_UNBIND: fake: cannot reach the server over SSH");
  CHECK(row.task_error_msg == "fake: cannot reach the server over SSH");
}

TEST_CASE("the failed task's reason is found on page 3 of 2500 older failures listed first") {
  Rig rig({.fake = {.task_duration = 50ms, .seeded_failed_tasks = 2500},
           .config = {{"queue.task_failure_retries", "0"}}});
  rig.fake().set_behavior("fails-1", fake::failed_tasks(-1));
  rig.fake().set_behavior("fails-2", fake::failed_tasks(-1));
  rig.start();
  auto enq = rig.ctl({"enqueue", "fails-1", "fails-2"});
  REQUIRE(enq.exit_code == 0);
  CHECK(rig.ctl({"wait", "--batch", Rig::batch_of(enq), "--timeout", "60"}).exit_code == 1);
  auto rows = read_jobs(rig.db_path());
  for (const char* id : {"fails-1", "fails-2"}) {
    CAPTURE(id);
    const JobRow& row = rows.at(id);
    CHECK(row.state == "failed");
    CHECK(row.error_code == "KPS.0003");
    CHECK(row.task_error_msg == "fake: cannot reach the server over SSH");
    CHECK(rig.fake().calls_for(id) == 1);  // task_failure_retries = 0: FAILED_UNBIND is final
  }
  // Each page-through of 2,502 failures is 3 requests (1,000 a page); the two jobs' failures
  // share one when they come together, else take one each.
  std::int64_t lookups = rig.fake().failed_task_lookups();
  MESSAGE("failed-task list requests for 2 failures among 2,500: " << lookups);
  CHECK(lookups >= 3);
  CHECK(lookups <= 6);
  CHECK(rig.fake().violations().empty());
}

TEST_CASE("maybe done: a call sent again after an unknown outcome and refused is marked") {
  Rig rig({.fake = {.task_duration = 50ms}});
  fake::Behavior b;  // the first call's connection drops after the request: outcome unknown
  b.drop_times = 1;  // then every call is refused: no key pair left (the first did the work)
  b.error_status = 400;
  b.error_times = -1;
  b.error_code = "KPS.6004";
  rig.fake().set_behavior("maybe", b);
  rig.start();
  auto enq = rig.ctl({"enqueue", "maybe", "plain"});
  REQUIRE(enq.exit_code == 0);
  CHECK(rig.ctl({"wait", "--batch", Rig::batch_of(enq), "--timeout", "60"}).exit_code == 1);
  auto row = read_jobs(rig.db_path()).at("maybe");
  CHECK(row.state == "failed");
  CHECK(row.error_msg.starts_with("maybe done (an earlier call's outcome was unknown"));
  auto attempts = read_attempts(rig.db_path(), row.id);
  REQUIRE(attempts.size() == 2);
  CHECK(attempts[0].look == "outcome unknown; no task found; sending again");
  CHECK(rig.fake().calls_for("maybe") == 2);

  auto listed = rig.ctl({"list", "--maybe-done"});
  CHECK(listed.out.find("maybe") != std::string::npos);
  CHECK(listed.out.find("plain") == std::string::npos);
  auto report = rig.ctl({"--output", "csv", "report", "--maybe-done"});
  CHECK(report.out.find("maybe_done\n") != std::string::npos);
  CHECK(report.out.find(",maybe,failed,") != std::string::npos);
  CHECK(report.out.find(",plain,") == std::string::npos);
  auto sqlite = run_command(
      {"/usr/bin/sqlite3", rig.db_path(), "SELECT server_id FROM jobs WHERE maybe_done"},
      rig.dir().path().string());
  CHECK(sqlite.out == "maybe\n");
}
