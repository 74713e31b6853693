// End to end: HTTPS verification (the right CA, a wrong one fixed by SIGHUP, a name the
// certificate does not carry), plain http refused beyond loopback, and the auth methods
// (iam_password, aksk, temporary aksk).
#include "e2e_rig.hpp"
#include "raw_client.hpp"
#include "tls_certs.hpp"

#include <boost/json.hpp>

#include <doctest/doctest.h>

#include <filesystem>
#include <sys/stat.h>
#include <thread>

using namespace kpsd;
using namespace kpsd::test;
using namespace std::chrono_literals;

namespace {

std::size_t count_of(const std::string& haystack, const std::string& needle) {
  std::size_t n = 0;
  for (auto at = haystack.find(needle); at != std::string::npos; at = haystack.find(needle, at + 1))
    ++n;
  return n;
}

void wait_for_log(Rig& rig, const std::string& text, std::chrono::milliseconds limit = 10s) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (rig.log().find(text) == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
}

std::int64_t terminal_jobs(Rig& rig) {
  auto st = rig.ctl_json({"stats"}).at("states").as_object();
  return st.at("succeeded").as_int64() + st.at("failed").as_int64() + st.at("cancelled").as_int64();
}

}  // namespace

TEST_CASE("https with the right CA: every job succeeds") {
  TempDir certs;
  auto good = make_certs(certs, "good-", "DNS:localhost,IP:127.0.0.1");
  Rig rig(
      {.fake = {.task_duration = 20ms, .tls_cert_file = good.leaf, .tls_key_file = good.leaf_key},
       .config = {{"kps.ca_file", good.ca}},
       .endpoint_host = "localhost"});
  rig.start();
  std::vector<std::string> args{"enqueue"};
  for (int i = 0; i < 20; ++i) args.push_back("tls-" + std::to_string(i));
  REQUIRE(rig.ctl(args).exit_code == 0);
  CHECK(rig.ctl({"wait", "--timeout", "60"}).exit_code == 0);
  CHECK(rig.fake().disassociate_calls() == 20);
  CHECK(rig.fake().violations().empty());
  CHECK(rig.log().find("plain http") == std::string::npos);
}

TEST_CASE(
    "https with the wrong CA: nothing is sent - the cause is named once - jobs wait - a fixed CA "
    "and SIGHUP let them through") {
  TempDir certs;
  auto server = make_certs(certs, "server-", "DNS:localhost,IP:127.0.0.1", "the real CA");
  auto other = make_certs(certs, "other-", "DNS:localhost", "some other CA");
  std::string ca_file = certs.file("trusted-ca.pem");
  std::filesystem::copy_file(other.ca, ca_file);
  Rig rig({.fake = {.task_duration = 20ms,
                    .tls_cert_file = server.leaf,
                    .tls_key_file = server.leaf_key},
           .config = {{"kps.ca_file", ca_file}},
           .endpoint_host = "localhost"});
  rig.start();
  REQUIRE(rig.ctl({"enqueue", "w-1", "w-2", "w-3", "w-4", "w-5"}).exit_code == 0);
  wait_for_log(rig, "TLS handshake with localhost");
  std::this_thread::sleep_for(1s);  // several retry rounds
  std::string log = rig.log();
  CHECK(rig.fake().requests() == 0);  // no request ever reached the server
  CHECK(log.find("TLS handshake with localhost:" + std::to_string(rig.fake().port()) +
                 " failed: unable to get local issuer certificate") != std::string::npos);
  CHECK(count_of(log, "TLS handshake with") == 1);  // reported once, not per call
  CHECK(terminal_jobs(rig) == 0);
  auto jobs = rig.ctl_json({"list"}).at("jobs").as_array();
  for (const auto& j : jobs) CHECK(j.at("attempts").as_int64() == 0);  // no attempt burnt

  std::filesystem::copy_file(server.ca, ca_file, std::filesystem::copy_options::overwrite_existing);
  rig.daemon().signal(SIGHUP);
  CHECK(rig.ctl({"wait", "--timeout", "60"}).exit_code == 0);
  CHECK(rig.fake().disassociate_calls() == 5);
  CHECK(rig.fake().violations().empty());
}

TEST_CASE("https to a host name the certificate does not carry is refused") {
  TempDir certs;
  auto wrong = make_certs(certs, "wrong-", "DNS:other.test");
  Rig rig({.fake = {.tls_cert_file = wrong.leaf, .tls_key_file = wrong.leaf_key},
           .config = {{"kps.ca_file", wrong.ca}},
           .endpoint_host = "localhost"});
  rig.start();
  REQUIRE(rig.ctl({"enqueue", "h-1"}).exit_code == 0);
  wait_for_log(rig, "TLS handshake with localhost");
  std::this_thread::sleep_for(500ms);
  CHECK(rig.log().find("failed: hostname mismatch") != std::string::npos);
  CHECK(rig.fake().requests() == 0);
  CHECK(terminal_jobs(rig) == 0);
}

TEST_CASE("plain http to another host is refused naming the key - loopback is fine") {
  // Issue 31 item 5: the token (and the IAM password) went in clear to another host with
  // only a warning (for auth.iam_endpoint, not even that).
  Rig rig({.config = {{"kps.endpoint", "http://kms.invalid:80"}}});
  rig.launch();
  auto code = rig.daemon().wait(10s);
  REQUIRE(code.has_value());
  CHECK(*code == 78);
  CHECK(rig.log().find("kps.endpoint: `http://kms.invalid:80` is plain http to another host") !=
        std::string::npos);
  auto check = run_command({KPSD_BIN, "--config", rig.config_path(), "--check-config"},
                           rig.dir().path().string());
  CHECK(check.exit_code == 78);
  Rig local;
  local.start();
  CHECK(local.log().find("plain http") == std::string::npos);  // loopback: allowed
}

TEST_CASE("iam_password: a token that dies mid-batch is refreshed once and nothing fails") {
  fake::IamOptions iam{"acct", "ops", "pw-123", "cn-north-4", 400ms};
  RigOptions options = iam_password_options(iam);
  options.fake.task_duration = 20ms;
  options.fake.call_delay = 25ms;
  Rig rig(options);
  rig.dir().write("iam-password", "pw-123\n");
  rig.start({"CREDENTIALS_DIRECTORY=" + rig.dir().path().string()});
  std::string ids;
  for (int i = 0; i < 200; ++i) ids += "iam-" + std::to_string(i) + "\n";
  REQUIRE(rig.ctl({"enqueue", "--file", rig.dir().write("ids", ids)}).exit_code == 0);
  CHECK(rig.ctl({"wait", "--timeout", "120"}).exit_code == 0);
  CHECK(rig.fake().expired_token_rejections() >= 1);  // the token did die mid-batch
  CHECK(rig.fake().iam_tokens_issued() >= 2);
  // One refresh per expiry, not one per rejected call: 8 calls in flight share each refresh.
  CHECK(rig.fake().iam_tokens_issued() <= rig.fake().expired_token_rejections() + 1);
  for (const auto& [id, row] : read_jobs(rig.db_path())) {
    CAPTURE(id);
    CHECK(row.state == "succeeded");
    CHECK(row.attempts == 1);  // a 401 retry does not use up an attempt
  }
  CHECK(rig.fake().violations().empty());
  CHECK(rig.log().find("pw-123") == std::string::npos);
  CHECK(rig.log().find("fake-iam-token") == std::string::npos);
}

TEST_CASE("aksk: every request is signed and the fake checks each signature") {
  Rig rig(
      {.fake = {.task_duration = 20ms, .ak = "AKTESTACCESSKEY0001", .sk = "sk-secret-0123456789"},
       .config = {{"auth.method", "aksk"}, {"auth.ak_file", "ak"}, {"auth.sk_file", "sk"}}});
  rig.dir().write("ak", "AKTESTACCESSKEY0001\n");
  rig.dir().write("sk", "sk-secret-0123456789\n");
  rig.fake().set_behavior("ak-failed-task", fake::failed_tasks(1));
  rig.start({"CREDENTIALS_DIRECTORY=" + rig.dir().path().string()});
  std::vector<std::string> args{"enqueue", "ak-failed-task"};
  for (int i = 0; i < 20; ++i) args.push_back("ak-" + std::to_string(i));
  REQUIRE(rig.ctl(args).exit_code == 0);
  CHECK(rig.ctl({"wait", "--timeout", "60"}).exit_code == 0);
  // 22 disassociate calls, at least as many task polls, and a failed-tasks lookup with a query.
  CHECK(rig.fake().signatures_checked() >= 44);
  CHECK(rig.fake().failed_task_lookups() >= 1);
  CHECK(rig.fake().violations().empty());
  CHECK(rig.log().find("sk-secret") == std::string::npos);
}

TEST_CASE("temporary aksk: X-Security-Token signed - a rotated key pair is used without SIGHUP") {
  const std::string token1 = "STS-TOKEN-ONE-" + std::string(3000, 'a');
  const std::string token2 = "STS-TOKEN-TWO-" + std::string(3000, 'b');
  Rig rig({.fake = {.task_duration = 20ms,
                    .ak = "HSTTEMPAK000001",
                    .sk = "temp-sk-secret-0001",
                    .security_token = token1},
           .config = {{"auth.method", "aksk"},
                      {"auth.ak_file", "ak"},
                      {"auth.sk_file", "sk"},
                      {"auth.security_token_file", "security-token"},
                      {"queue.rate_per_second", "40"},
                      {"log.level", "debug"}}});
  rig.dir().write("ak", "HSTTEMPAK000001\n");
  rig.dir().write("sk", "temp-sk-secret-0001\n");
  rig.dir().write("security-token", token1 + "\n");
  rig.start({"CREDENTIALS_DIRECTORY=" + rig.dir().path().string()});
  auto first = rig.ctl({"enqueue", "tmp-a-1", "tmp-a-2", "tmp-a-3"});
  REQUIRE(first.exit_code == 0);
  CHECK(rig.ctl({"wait", "--batch", Rig::batch_of(first), "--timeout", "60"}).exit_code == 0);
  std::int64_t signed_before = rig.fake().signatures_checked();
  CHECK(signed_before >= 6);
  // The key pair expires and a new one is written, as a credential helper would (the three
  // files in turn, not at once); the old one is refused from then on.
  rig.fake().set_aksk("HSTTEMPAK000002", "temp-sk-secret-0002", token2);
  rig.dir().write("security-token", token2 + "\n");
  rig.dir().write("sk", "temp-sk-secret-0002\n");
  rig.dir().write("ak", "HSTTEMPAK000002\n");
  // Files are looked at once a second at most: after that, the new pair is used unasked.
  std::this_thread::sleep_for(1200ms);
  std::vector<std::string> args{"enqueue"};
  for (int i = 0; i < 40; ++i) args.push_back("tmp-b-" + std::to_string(i));
  auto second = rig.ctl(args);
  REQUIRE(second.exit_code == 0);
  CHECK(rig.ctl({"wait", "--batch", Rig::batch_of(second), "--timeout", "60"}).exit_code == 0);
  for (const auto& [id, row] : read_jobs(rig.db_path())) {
    CAPTURE(id);
    CHECK(row.state == "succeeded");
    CHECK(row.attempts == 1);  // a 401 from the old key pair uses no attempt
  }
  CHECK(rig.fake().signatures_checked() >= signed_before + 80);
  CHECK(rig.fake().expired_token_rejections() == 0);  // no call went out with the old pair
  CHECK(rig.fake().violations().empty());
  std::string log = rig.log();
  for (const auto& secret : {token1, token2, std::string("temp-sk-secret")})
    CHECK(log.find(secret.substr(0, 20)) == std::string::npos);
}
