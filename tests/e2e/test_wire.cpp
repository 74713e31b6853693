// End to end: what real gateways, IAM and proxies send (shared/kps-api.md), against the built
// kpsd. Large tokens and headers, interim answers, connections closed under kpsd, tokens
// refused with a queue waiting.
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

// One unlabelled sample of a /metrics page.
double metric(const std::string& page, const std::string& name) {
  auto at = page.find("\n" + name + " ");
  REQUIRE_MESSAGE(at != std::string::npos, name << " not in /metrics");
  return std::stod(page.substr(at + name.size() + 2));
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
  options.task_duration = 20ms;
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
  Rig rig({.task_duration = 20ms});
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
      Rig rig({.task_duration = 10ms,
               .config = {{"queue.concurrency", concurrency}},
               .interim_status = interim});
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

TEST_CASE("a server that closes after every 3rd answer costs no attempt: 200 jobs none failed") {
  for (bool announced : {false, true}) {
    CAPTURE(announced);
    Rig rig({.config = {{"queue.max_attempts", "1"},
                        {"queue.concurrency", "8"},
                        {"kps.poll_tasks", "false"},
                        {"metrics.listen", "127.0.0.1:0"}},
             .close_after = 3,
             .close_announced = announced});
    rig.start();
    enqueue_ids(rig, "closing-", 200);
    auto wait = rig.ctl({"wait", "--timeout", "60"});
    CHECK_MESSAGE(wait.exit_code == 0, wait.out << wait.err);
    for (const auto& [id, row] : read_jobs(rig.db_path())) {
      CAPTURE(id);
      CHECK(row.state == "succeeded");
      CHECK(row.attempts == 1);
      CHECK(rig.fake().calls_for(id) == 1);  // the server never read the request it missed
    }
    std::string page = http_get(rig.metrics_port(), "/metrics");
    CHECK(metric(page, "kpsd_answers_unreadable_total") == 0);
    // Every request a silent close left unread was sent again on a fresh connection; an
    // announced close is never reused, so nothing needs sending again.
    double resends = metric(page, "kpsd_stale_connection_resends_total");
    if (announced) {
      CHECK(resends == 0);
    } else {
      CHECK(rig.fake().unread_requests() >= 20);
      CHECK(resends == static_cast<double>(rig.fake().unread_requests()));
    }
    MESSAGE("announced=" << announced << ": " << rig.fake().unread_requests()
                         << " requests never read, " << resends << " sent again");
  }
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
  Rig rig(
      {.call_delay = 5ms, .config = {{"kps.poll_tasks", "false"}, {"queue.concurrency", "16"}}});
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
  // Three attempts, not one: under load (three test processes on two cores) about one silent
  // close in a few hundred over TLS has shown up as a 2 s read timeout instead of an EOF, an
  // unknown outcome kpsd retries (the fake never read that request, so it is still one call).
  Rig rig({.task_duration = 10ms,
           .config = {{"kps.ca_file", good.ca},
                      {"queue.concurrency", "16"},
                      {"queue.max_attempts", "3"}},
           .tls_cert = good.leaf,
           .tls_key = good.leaf_key,
           .endpoint_host = "localhost",
           .interim_status = 103,
           .close_after = 3});
  rig.start();
  enqueue_ids(rig, "tls-wire-", 120);
  CHECK(rig.ctl({"wait", "--timeout", "60"}).exit_code == 0);
  check_each_once(rig, 120);
  CHECK(rig.fake().unread_requests() > 0);  // closes were met, and cost nothing
}
