// End to end: what real gateways, IAM and proxies send (docs/vendor-api.md, "What real gateways
// and proxies send"), against the built kpsd. Large tokens and headers, interim answers,
// connections closed under kpsd, tokens refused with a queue waiting.
#include "e2e_rig.hpp"
#include "raw_client.hpp"
#include "tls_certs.hpp"

#include <doctest/doctest.h>

using namespace kpsd;
using namespace kpsd::test;
using namespace std::chrono_literals;

namespace {

std::string enqueue_ids(Rig& rig, const std::string& prefix, int n) {
  std::string ids;
  for (int i = 0; i < n; ++i) ids += prefix + std::to_string(i) + "\n";
  auto r = rig.ctl({"enqueue", "--file", rig.dir().write(prefix + "ids", ids)});
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  return ids;
}

// Every job succeeded, its server was called once, and it holds a task of its own server.
void check_each_once(Rig& rig, std::size_t jobs) {
  auto rows = read_jobs(rig.db_path());
  REQUIRE(rows.size() == jobs);
  for (const auto& [id, row] : rows) {
    CAPTURE(id);
    CAPTURE(row.error_msg);
    CHECK(row.state == "succeeded");
    CHECK(rig.fake().calls_for(id) == 1);
    CHECK(rig.fake().server_of_task(row.task_id) == id);
  }
  CHECK(rig.fake().disassociate_calls() == static_cast<std::int64_t>(jobs));
  CHECK(rig.fake().violations().empty());
}

}  // namespace

TEST_CASE("iam_password with a 30 KB token: jobs succeed and every call carries it") {
  fake::IamOptions iam{"acct", "ops", "pw-123", "cn-north-4"};
  iam.token_bytes = 30000;
  RigOptions options = iam_password_options(iam);
  options.fake.task_duration = 20ms;
  Rig rig(options);
  rig.dir().write("iam-password", "pw-123\n");
  rig.start({"CREDENTIALS_DIRECTORY=" + rig.dir().path().string()});
  enqueue_ids(rig, "iam-big-", 50);
  CHECK(rig.ctl({"wait", "--timeout", "60"}).exit_code == 0);
  check_each_once(rig, 50);
  CHECK(rig.fake().iam_tokens_issued() == 1);
  // Every KPS call was checked against the issued token (an unknown one is a violation).
  CHECK(rig.fake().largest_auth_token() >= 30000);
  CHECK(rig.log().find("header limit") == std::string::npos);
  CHECK(rig.log().find("AAAAB") == std::string::npos);  // no piece of the token in the log
}

TEST_CASE("a 10 KB Set-Cookie on every 202: each server is called exactly once") {
  Rig rig({.fake = {.task_duration = 20ms}});
  for (int i = 0; i < 40; ++i)
    rig.fake().set_behavior("cookie-" + std::to_string(i), fake::big_cookie(10 * 1024));
  rig.start();
  enqueue_ids(rig, "cookie-", 40);
  CHECK(rig.ctl({"wait", "--timeout", "60"}).exit_code == 0);
  check_each_once(rig, 40);
}

TEST_CASE("an interim answer before every answer: calls = jobs and each job has its own task") {
  for (unsigned interim : {100u, 103u}) {
    for (const char* concurrency : {"1", "16"}) {
      CAPTURE(interim);
      CAPTURE(concurrency);
      Rig rig({.fake = {.task_duration = 10ms, .interim_status = interim},
               .config = {{"queue.concurrency", concurrency}}});
      rig.start();
      enqueue_ids(rig, "interim-", 60);
      CHECK(rig.ctl({"wait", "--timeout", "60"}).exit_code == 0);
      check_each_once(rig, 60);
      // Polls were read right too: each job's task ended SUCCESS on its own poll.
      for (const auto& [id, row] : read_jobs(rig.db_path()))
        CHECK(row.task_status == "SUCCESS_UNBIND");
    }
  }
}

TEST_CASE(
    "a server that closes after every 3rd answer: each POST it never answered is an attempt") {
  // Issue 30 item 1: a POST written into a reused connection that then closes without an
  // answer was sent again blind, within the same attempt. The server may have read it and
  // acted (RFC 9112 §9.3.1): now it is an unknown outcome with an attempt row of its own, the
  // server's task is looked for, and only then is it sent again as a new attempt.
  for (bool announced : {false, true}) {
    CAPTURE(announced);
    // A job meets a silent close on about a third of its calls: 12 attempts make one that
    // meets it every time (and fails) a one-in-a-million event.
    Rig rig({.fake = {.close_after = 3, .close_announced = announced},
             .config = {{"queue.max_attempts", "12"},
                        {"queue.concurrency", "8"},
                        {"kps.poll_tasks", "false"},
                        {"kps.request_timeout_ms", "500"},
                        {"metrics.listen", "127.0.0.1:0"}}});
    rig.start();
    enqueue_ids(rig, "closing-", 200);
    auto wait = rig.ctl({"wait", "--timeout", "90"});
    CHECK_MESSAGE(wait.exit_code == 0, wait.out << wait.err);
    std::int64_t second_attempts = 0;
    for (const auto& [id, row] : read_jobs(rig.db_path())) {
      CAPTURE(id);
      CHECK(row.state == "succeeded");
      // Every request the server saw, read or not, has its row; each answered once.
      CHECK(row.attempt_rows == row.attempts);
      second_attempts += row.attempts - 1;
      auto attempts = read_attempts(rig.db_path(), row.id);
      REQUIRE(!attempts.empty());
      CHECK(attempts.back().http_status == 202);
      for (std::size_t i = 0; i + 1 < attempts.size(); ++i) {
        CHECK(attempts[i].error_msg ==
              "answer unreadable after send: the server closed the reused connection after the "
              "request, before any answer");
        CHECK(attempts[i].look == "outcome unknown; no task found; sending again");
      }
    }
    std::string page = http_get(rig.metrics_port(), "/metrics");
    // What the silent closes met: POSTs, each an attempt of its own after a look; and the
    // looks' GETs, each sent again at once on a fresh connection (idempotent).
    double resends = metric(page, "kpsd_stale_connection_resends_total");
    if (announced) {
      CHECK(second_attempts == 0);  // an announced close is never reused
      CHECK(resends == 0);
    } else {
      CHECK(rig.fake().unread_requests() >= 20);
      CHECK(second_attempts > 0);
      CHECK(second_attempts + resends == static_cast<double>(rig.fake().unread_requests()));
    }
    // Every disassociate the server received, read or not, is on record; none went twice.
    CHECK(rig.fake().disassociates_received() == rig.fake().disassociate_calls() + second_attempts);
    MESSAGE("announced=" << announced << ": " << rig.fake().unread_requests()
                         << " requests never read: " << second_attempts
                         << " POSTs looked for and sent again as a new attempt, " << resends
                         << " GETs sent again on a fresh connection");
  }
}

TEST_CASE("a POST read and dropped on a reused connection is not resent blind: 2 calls 2 rows") {
  // Issue 30 item 1, its smallest input: the server reads the whole request on a reused
  // keep-alive connection, then closes it without an answer. Before: 2 calls, 1 attempt row.
  Rig rig({.config = {{"queue.concurrency", "1"},
                      {"kps.poll_tasks", "false"},
                      {"kps.request_timeout_ms", "500"},
                      {"metrics.listen", "127.0.0.1:0"}}});
  rig.fake().set_behavior("dropper", fake::dropped_connections(1));
  rig.start();
  // A first job leaves a keep-alive connection in the pool; the second goes out on it.
  REQUIRE(rig.ctl({"enqueue", "warm"}).exit_code == 0);
  REQUIRE(rig.ctl({"wait", "--timeout", "30"}).exit_code == 0);
  REQUIRE(rig.ctl({"enqueue", "dropper"}).exit_code == 0);
  REQUIRE(rig.ctl({"wait", "--timeout", "30"}).exit_code == 0);
  auto row = read_jobs(rig.db_path()).at("dropper");
  CHECK(row.state == "succeeded");
  CHECK(rig.fake().calls_for("dropper") == 2);
  auto attempts = read_attempts(rig.db_path(), row.id);
  REQUIRE(attempts.size() == 2);
  CHECK(attempts[0].http_status == 0);
  CHECK(attempts[0].error_msg.starts_with("answer unreadable after send: "));
  CHECK(attempts[0].look == "outcome unknown; no task found; sending again");
  CHECK(attempts[1].http_status == 202);
  CHECK(attempts[1].started_at >= attempts[0].finished_at);
  std::string page = http_get(rig.metrics_port(), "/metrics");
  CHECK(metric(page, "kpsd_stale_connection_resends_total") == 0);
}

TEST_CASE("an unbind accepted with 200 or 201 is delivered: one call each, no retry") {
  // Issue 30 item 4: only 202 counted; a 200 {"task_id","status":"SUCCESS"} was retried 4
  // times as "unexpected HTTP 200" and ended failed.
  Rig rig({.fake = {.task_duration = 30ms}});
  for (int status : {200, 201}) {
    fake::Behavior b;
    b.accept_status = status;
    rig.fake().set_behavior("accepted-" + std::to_string(status), b);
  }
  rig.start();
  REQUIRE(rig.ctl({"enqueue", "accepted-200", "accepted-201"}).exit_code == 0);
  CHECK(rig.ctl({"wait", "--timeout", "30"}).exit_code == 0);
  for (const auto& [id, row] : read_jobs(rig.db_path())) {
    CAPTURE(id);
    CHECK(row.state == "succeeded");
    CHECK(row.task_status == "SUCCESS_UNBIND");
    CHECK(rig.fake().calls_for(id) == 1);
    auto attempts = read_attempts(rig.db_path(), row.id);
    REQUIRE(attempts.size() == 1);
    CHECK(attempts[0].http_status == std::stoi(id.substr(9)));
  }
}

TEST_CASE("a gzipped 202 kpsd did not ask for: unknown outcome named so - its task adopted") {
  // Issue 30 item 8: a 202 with Content-Encoding: gzip was "not JSON"; the job was sent three
  // times and failed with no word of gzip. kpsd asks for identity (the fake checks every
  // request); an answer in a coding is an unknown outcome, looked for before any second call:
  // here the task is still running, so it is adopted and no second call goes out.
  Rig rig({.fake = {.task_duration = 6s}, .config = {{"kps.request_timeout_ms", "1000"}}});
  fake::Behavior b;
  b.gzip_times = 1;
  rig.fake().set_behavior("gzipped", b);
  rig.start();
  REQUIRE(rig.ctl({"enqueue", "gzipped"}).exit_code == 0);
  CHECK(rig.ctl({"wait", "--timeout", "60"}).exit_code == 0);
  auto row = read_jobs(rig.db_path()).at("gzipped");
  CHECK(row.state == "succeeded");
  CHECK(rig.fake().calls_for("gzipped") == 1);
  auto attempts = read_attempts(rig.db_path(), row.id);
  REQUIRE(attempts.size() == 1);
  CHECK(attempts[0].http_status == 202);
  CHECK(attempts[0].error_msg ==
        "answer in content coding gzip (HTTP 202): kpsd asked for identity and cannot read it");
  CHECK(attempts[0].look.starts_with("outcome unknown; adopted running task"));
  CHECK(rig.fake().violations().empty());  // every request said Accept-Encoding: identity
}

TEST_CASE("a token refused with 2000 jobs queued: 2 refused calls then one per refresh") {
  Rig rig({.config = {{"kps.poll_tasks", "false"}, {"queue.concurrency", "32"}}});
  // The token in kpsd's file died (a password change): the fake now accepts only a new one.
  rig.fake().set_token("e2e-token-rotated");
  rig.start();
  enqueue_ids(rig, "refused-", 2000);
  wait_until(
      [&] { return rig.log().find("calls paused: credentials refused") != std::string::npos; }, 20s,
      "kpsd to pause for the credentials");
  std::int64_t at_pause = rig.fake().auth_refusals();
  CHECK(at_pause <= 2);
  // Blocked: probes 1 s, then 2 s apart, each after its own refresh (one refused call each).
  std::this_thread::sleep_for(3500ms);
  std::int64_t probes = rig.fake().auth_refusals() - at_pause;
  CHECK(probes <= 2);
  auto stats = rig.ctl_json({"stats"});
  REQUIRE(stats.at("blocked").is_object());
  CHECK(stats.at("blocked").at("cause").as_string() == "credentials");
  // The operator puts the new token in place: the next probe re-reads it and calls resume.
  rig.dir().write("token", "e2e-token-rotated\n");
  rig.daemon().signal(SIGHUP);
  CHECK(rig.ctl({"wait", "--timeout", "120"}).exit_code == 0);
  for (const auto& [id, row] : read_jobs(rig.db_path())) {
    CAPTURE(id);
    CHECK(row.state == "succeeded");
    CHECK(row.attempts == 1);
  }
  CHECK(rig.fake().disassociate_calls() == 2000);  // calls past the token check
  MESSAGE("refused calls: " << at_pause << " before the pause, " << rig.fake().auth_refusals()
                            << " in all, for 2000 jobs");
  CHECK(rig.log().find("e2e-token") == std::string::npos);
}

TEST_CASE("a token revoked while calls flow costs the calls in flight and one probe") {
  Rig rig({.fake = {.call_delay = 5ms},
           .config = {{"kps.poll_tasks", "false"}, {"queue.concurrency", "16"}}});
  rig.start();
  enqueue_ids(rig, "revoked-", 1500);
  wait_until([&] { return rig.fake().disassociate_calls() >= 300; }, 30s, "calls to flow");
  // Rotation: the new token is in the file first, then the old one is revoked (kpsd looks at
  // the file once a second, so it is still sending the old one).
  rig.dir().write("token", "e2e-token-next\n");
  rig.fake().set_token("e2e-token-next");
  CHECK(rig.ctl({"wait", "--timeout", "120"}).exit_code == 0);
  std::int64_t refused = rig.fake().auth_refusals();
  MESSAGE("refused calls after the revocation at concurrency 16: " << refused);
  CHECK(refused <= 16 + 2);
  for (const auto& [id, row] : read_jobs(rig.db_path())) {
    CAPTURE(id);
    CHECK(row.state == "succeeded");
  }
  CHECK(rig.log().find("calls paused") == std::string::npos);  // never blocked: one probe did
}

TEST_CASE("over https too: 103 before every answer and a silent close every 3rd answer") {
  TempDir certs;
  auto good = make_certs(certs, "wire-", "DNS:localhost,IP:127.0.0.1");
  // Twelve attempts: a POST met by a silent close is an unknown outcome and an attempt of its
  // own (issue 30), and about a third of the calls meet one; the fake never read those, so
  // each job is still one call it acted on.
  Rig rig({.fake = {.task_duration = 10ms,
                    .tls_cert_file = good.leaf,
                    .tls_key_file = good.leaf_key,
                    .interim_status = 103,
                    .close_after = 3},
           .config = {{"kps.ca_file", good.ca},
                      {"queue.concurrency", "16"},
                      {"queue.max_attempts", "12"}},
           .endpoint_host = "localhost"});
  rig.start();
  enqueue_ids(rig, "tls-wire-", 120);
  CHECK(rig.ctl({"wait", "--timeout", "60"}).exit_code == 0);
  check_each_once(rig, 120);
  CHECK(rig.fake().unread_requests() > 0);  // closes were met, and cost nothing
}
