// End to end: the delivery edge cases where a wrong call is easy to send: a refused task poll,
// a replace-form job whose key is gone, cancel and retry with a call in flight, a bad number
// in a failed-tasks body, a day-long Retry-After, and a call that kills kpsd every time. The
// fake counts every disassociate per server, so each test shows which calls were never sent.
#include "e2e_rig.hpp"

#include <doctest/doctest.h>

#include <ctime>
#include <filesystem>
#include <functional>

using namespace kpsd;
using namespace kpsd::test;
using namespace std::chrono_literals;

namespace {

std::int64_t job_id_of(Rig& rig, const std::string& server) {
  return read_jobs(rig.db_path()).at(server).id;
}

std::string state_of(Rig& rig, const std::string& server) {
  return read_jobs(rig.db_path()).at(server).state;
}

}  // namespace

TEST_CASE(
    "a refused task poll never unbinds again: it fails 'cannot follow task' and retry re-checks") {
  Rig rig({.fake = {.task_duration = 20ms}});
  rig.fake().set_behavior("poll-403", fake::refused_polls(403, -1));
  rig.fake().set_behavior("poll-404-once", fake::refused_polls(404, 1));
  rig.start();
  auto enq = rig.ctl({"enqueue", "poll-403", "poll-404-once"});
  REQUIRE(enq.exit_code == 0);
  // The batch, not a bare wait: a bare wait follows only jobs unfinished when it starts, and
  // poll-403 may have failed already (a slow kpsctl start under a sanitizer).
  auto wait = rig.ctl({"wait", "--batch", Rig::batch_of(enq), "--timeout", "60"});
  CHECK(wait.exit_code == 1);

  auto rows = read_jobs(rig.db_path());
  CHECK(rows["poll-403"].state == "failed");
  CHECK(rows["poll-403"].error_msg.starts_with("cannot follow task " + rows["poll-403"].task_id +
                                               ": HTTP 403"));
  CHECK(rows["poll-403"].error_code == "KPS.9003");
  CHECK(rig.fake().calls_for("poll-403") == 1);  // never unbound again
  CHECK(rig.fake().task_polls_for("poll-403") == 3);
  CHECK(rows["poll-404-once"].state == "succeeded");
  CHECK(rig.fake().calls_for("poll-404-once") == 1);

  // The permission is granted: retry follows the same task, it does not send another call.
  rig.fake().set_behavior("poll-403", {});
  auto retry = rig.ctl({"retry", std::to_string(rows["poll-403"].id)});
  CHECK_MESSAGE(retry.exit_code == 0, retry.err);
  CHECK(retry.out.find("polling its task again") != std::string::npos);
  CHECK(rig.ctl({"wait", "--timeout", "60"}).exit_code == 0);
  CHECK(state_of(rig, "poll-403") == "succeeded");
  CHECK(rig.fake().calls_for("poll-403") == 1);
}

TEST_CASE("a replace-form job whose key is gone is never sent in reset form") {
  Rig rig({.fake = {.task_duration = 1500ms}, .config = {{"kps.poll_timeout_ms", "400"}}});
  rig.fake().set_behavior("rk-1", fake::failed_tasks(1));
  rig.start();
  std::string key = rig.dir().write("rk.pw", "S3cret-Passw0rd\n");
  auto enq = rig.ctl({"enqueue", "--auth-type", "password", "--key-file", key, "rk-1"});
  REQUIRE_MESSAGE(enq.exit_code == 0, enq.err);
  wait_until([&] { return state_of(rig, "rk-1") == "failed"; }, 30s, "task still pending");
  CHECK(read_jobs(rig.db_path())["rk-1"].error_msg.starts_with("task still pending"));
  // The key was deleted when the job ended. Let the task end (FAILED_UNBIND), then re-check it.
  std::this_thread::sleep_for(1500ms);
  auto retry = rig.ctl({"retry", std::to_string(job_id_of(rig, "rk-1"))});
  CHECK_MESSAGE(retry.exit_code == 0, retry.err);
  wait_until(
      [&] {
        auto row = read_jobs(rig.db_path())["rk-1"];
        return row.state == "failed" && !row.error_msg.starts_with("task still pending");
      },
      30s, "the re-check");
  auto row = read_jobs(rig.db_path())["rk-1"];
  CHECK(row.error_msg == "key no longer held: enqueue again with the key");
  CHECK(rig.fake().calls_for("rk-1") == 1);  // the reset-form call was never sent
  CHECK(row.attempt_rows == 1);
}

TEST_CASE("cancel with a call in flight: retry waits for that call and calls never overlap") {
  Rig rig({.config = {{"kps.request_timeout_ms", "5000"}, {"kps.poll_tasks", "false"}}});
  rig.fake().set_behavior("slow-cancel", fake::slow_answers(1500ms, 1));
  rig.start();
  REQUIRE(rig.ctl({"enqueue", "slow-cancel"}).exit_code == 0);
  wait_until([&] { return rig.fake().calls_for("slow-cancel") == 1; }, 10s, "the first call");
  std::string id = std::to_string(job_id_of(rig, "slow-cancel"));
  CHECK(rig.ctl({"cancel", id}).exit_code == 0);
  auto early = rig.ctl({"retry", id});
  CHECK(early.exit_code == 1);
  CHECK(early.err.find("still in flight") != std::string::npos);
  // The first call's late 202 is recorded on its attempt but does not revive the job.
  wait_until([&] { return read_attempts(rig.db_path(), std::stoll(id)).front().finished_at != 0; },
             10s, "the first call to end");
  CHECK(state_of(rig, "slow-cancel") == "cancelled");
  auto retry = rig.ctl({"retry", id});
  CHECK_MESSAGE(retry.exit_code == 0, retry.err);
  CHECK(rig.ctl({"wait", "--timeout", "30"}).exit_code == 0);
  auto attempts = read_attempts(rig.db_path(), std::stoll(id));
  REQUIRE(attempts.size() == 2);
  CHECK(attempts[1].started_at >= attempts[0].finished_at);  // one call at a time
  CHECK(rig.fake().calls_for("slow-cancel") == 2);
}

TEST_CASE("a failed-tasks body with total 1e30 does not strand the job") {
  Rig rig({.fake = {.task_duration = 20ms, .failed_tasks_total = "1e30"}});
  rig.fake().set_behavior("ft-1", fake::failed_tasks(1));
  rig.fake().set_behavior("ft-2", fake::failed_tasks(1));
  rig.start();
  REQUIRE(rig.ctl({"enqueue", "ft-1", "ft-2"}).exit_code == 0);
  auto wait = rig.ctl({"wait", "--timeout", "30"});
  CHECK_MESSAGE(wait.exit_code == 0, wait.out << wait.err);
  auto rows = read_jobs(rig.db_path());
  for (const char* id : {"ft-1", "ft-2"}) {
    CAPTURE(id);
    CHECK(rows[id].state == "succeeded");
    CHECK(rows[id].task_error_code == "KPS.0003");  // the reason was still found on the page
    CHECK(rig.fake().calls_for(id) == 2);           // the FAILED task, then the good one
  }
  CHECK(rig.fake().failed_task_lookups() >= 2);
}

TEST_CASE("Retry-After: a day is capped by retry_after_max_ms - an asctime date is followed") {
  Rig rig({.config = {{"queue.retry_after_max_ms", "1500"}, {"kps.poll_tasks", "false"}}});
  rig.fake().set_behavior("ra-day", fake::error_answers(429, 1, "APIGW.0308", "86400"));
  // asctime form, 3 s ahead: "Sun Nov  6 08:49:37 1994". Its job goes first: the date is
  // read against the clock when the answer comes, and a job sent after ra-day's 1.5 s hold
  // would find it passed (the gate's old 1 s probe delay hid that: issue 30 item 10).
  std::time_t at = std::time(nullptr) + 3;
  std::tm tm{};
  ::gmtime_r(&at, &tm);
  char date[64];
  std::strftime(date, sizeof(date), "%a %b %e %H:%M:%S %Y", &tm);
  rig.fake().set_behavior("ra-asctime", fake::error_answers(429, 1, "APIGW.0308", date));
  rig.start();
  REQUIRE(rig.ctl({"enqueue", "ra-asctime", "ra-day"}).exit_code == 0);
  auto wait = rig.ctl({"wait", "--timeout", "30"});
  CHECK_MESSAGE(wait.exit_code == 0, wait.out << wait.err);
  auto gap = [&](const std::string& server) {
    auto a = read_attempts(rig.db_path(), job_id_of(rig, server));
    REQUIRE(a.size() == 2);
    return a[1].started_at - a[0].finished_at;
  };
  CHECK(gap("ra-day") >= 1400);
  CHECK(gap("ra-day") < 5000);
  CHECK(gap("ra-asctime") >= 900);  // the date's whole second, less the clock's fraction
  CHECK(rig.log().find("Retry-After of 86400 s is longer than queue.retry_after_max_ms") !=
        std::string::npos);
}

TEST_CASE("a job whose call kills kpsd every time fails after max_attempts") {
  Rig rig({.config = {{"queue.max_attempts", "3"}, {"kps.request_timeout_ms", "10000"}}});
  rig.fake().set_behavior("killer", fake::slow_answers(8000ms));
  rig.start();
  REQUIRE(rig.ctl({"enqueue", "killer"}).exit_code == 0);
  for (int k = 1; k <= 3; ++k) {
    wait_until([&] { return rig.fake().calls_for("killer") == k; }, 15s,
               "call " + std::to_string(k));
    rig.daemon().signal(SIGKILL);  // as if this call crashed kpsd
    REQUIRE(rig.daemon().wait(10s).has_value());
    rig.start();
  }
  auto row = read_jobs(rig.db_path())["killer"];
  CHECK(row.state == "failed");
  CHECK(row.attempts == 3);
  // Its last call may have done the unbind: maybe done.
  CHECK(row.error_msg ==
        "maybe done (an earlier call's outcome was unknown; it may have unbound the key): gave up "
        "after 3 attempts: outcome lost: daemon stopped");
  std::this_thread::sleep_for(300ms);
  CHECK(rig.fake().calls_for("killer") == 3);  // not a fourth time
}

TEST_CASE(
    "broken credentials pause dispatch: no attempt rows - no attempts used - resume by itself") {
  // About 200 calls/s, so the batch (7 s of calls) outlasts both outages: a token file change
  // is noticed within a second (TokenSource::check_interval).
  Rig rig({.fake = {.call_delay = 20ms},
           .config = {{"queue.concurrency", "4"}, {"kps.poll_tasks", "false"}}});
  rig.start();
  std::string ids;
  for (int i = 0; i < 1500; ++i) ids += "cred-" + std::to_string(i) + "\n";
  REQUIRE(rig.ctl({"enqueue", "--file", rig.dir().write("ids", ids)}).exit_code == 0);
  wait_until([&] { return rig.fake().disassociate_calls() >= 40; }, 20s, "40 calls");

  auto attempt_rows = [&] {
    sql::Database db(rig.db_path(), sql::Database::Mode::read_only);
    sql::Statement s(db, "SELECT count(*) FROM attempts");
    REQUIRE(s.step());
    return s.column_int(0);
  };
  auto blocked_reason = [&]() -> std::string {
    auto stats = rig.ctl_json({"stats"});
    auto& b = stats.at("blocked");
    return b.is_null() ? "" : std::string(b.as_object().at("reason").as_string());
  };

  // 1. The token file disappears: nothing can be sent.
  std::filesystem::rename(rig.dir().file("token"), rig.dir().file("token.away"));
  wait_until([&] { return !blocked_reason().empty(); }, 10s, "blocked");
  CHECK(blocked_reason().find("token") != std::string::npos);
  std::this_thread::sleep_for(500ms);  // calls in flight end
  auto rows_before = attempt_rows();
  auto calls_before = rig.fake().disassociate_calls();
  std::this_thread::sleep_for(3s);
  CHECK(attempt_rows() == rows_before);  // no churn: not one attempt row while blocked
  CHECK(rig.fake().disassociate_calls() == calls_before);
  CHECK(rig.ctl({"stats"}).out.find("BLOCKED for") != std::string::npos);
  std::filesystem::rename(rig.dir().file("token.away"), rig.dir().file("token"));
  wait_until([&] { return blocked_reason().empty(); }, 20s, "calls to resume");

  // 2. A token that KPS refuses (401 even after a refresh): paused after at most two rounds.
  wait_until([&] { return rig.fake().disassociate_calls() >= 150; }, 20s, "150 calls");
  rig.dir().write("token", "a-token-kps-refuses\n");
  std::string reason;
  wait_until([&] { return (reason = blocked_reason()).find("401") != std::string::npos; }, 10s,
             "blocked on 401");
  std::this_thread::sleep_for(500ms);
  auto requests_refused = rig.fake().requests();  // refused calls count as requests only
  std::this_thread::sleep_for(3s);
  std::int64_t probes = rig.fake().requests() - requests_refused;
  MESSAGE("while refused: " << probes << " probe requests in 3 s");
  CHECK(probes >= 1);  // it does keep trying ...
  CHECK(probes <= 6);  // ... one probe at a time, 1 s then 2 s apart (each refreshed once)
  rig.dir().write("token", token + "\n");
  rig.daemon().signal(SIGHUP);  // re-reads the token and probes at once

  auto wait = rig.ctl({"wait", "--timeout", "60"});
  CHECK_MESSAGE(wait.exit_code == 0, wait.out << wait.err);
  int wrong = 0;
  for (const auto& [id, row] : read_jobs(rig.db_path())) {
    if (row.state != "succeeded" || row.attempts != 1 || rig.fake().accepted_for(id) != 1) {
      ++wrong;
      MESSAGE(id << ": " << row.state << " attempts " << row.attempts << " " << row.error_msg);
    }
  }
  CHECK(wrong == 0);  // no attempt was used up by either outage
  std::string log = rig.log();
  std::size_t paused = 0;
  for (auto at = log.find("calls paused:"); at != std::string::npos;
       at = log.find("calls paused:", at + 1))
    ++paused;
  CHECK(paused == 2);  // once per outage
}
