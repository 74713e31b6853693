// End to end: what an operator touches — every kpsctl command in both output modes, the
// control protocol under abuse, metrics, systemd notifications, reload.
#include "e2e_rig.hpp"
#include "notify_listener.hpp"
#include "raw_client.hpp"

#include <boost/json.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <filesystem>
#include <regex>
#include <set>
#include <sstream>
#include <sys/stat.h>
#include <thread>

using namespace kpsd;
using namespace kpsd::test;
using namespace std::chrono_literals;
namespace json = boost::json;

namespace {

json::object parse(const std::string& text) { return json::parse(text).as_object(); }

std::int64_t id_of(const json::object& enqueue_reply, std::size_t i) {
  return enqueue_reply.at("jobs").as_array().at(i).at("id").as_int64();
}

}  // namespace

TEST_CASE("kpsctl enqueue: ids - a file of ids - NDJSON with keys and ports - stdin") {
  Rig rig({.task_duration = 20ms});
  rig.start();
  auto args = rig.ctl({"enqueue", "a-1", "a-2"});
  CHECK(args.exit_code == 0);
  CHECK(args.out.find("a-1\tqueued") != std::string::npos);
  CHECK(std::regex_search(
      args.err, std::regex("^batch [0-9]+: enqueued 2 jobs \\(2 new, 0 already queued\\)")));

  std::string key_file = rig.dir().write(
      "id_rsa", "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n");
  std::string pw_file = rig.dir().write("pw", "s3cret-pw\n");
  std::string ndjson =
      "# comment lines and blank lines are skipped\n\n"
      "{\"server_id\": \"n-1\", \"port\": 2222, \"auth\": {\"type\": \"keypair\", \"key_file\": "
      "\"" +
      key_file +
      "\"}}\n"
      "{\"server_id\": \"n-2\", \"auth\": {\"type\": \"password\", \"key_file\": \"" +
      pw_file +
      "\"}}\n"
      "n-3\n";
  auto file = rig.ctl({"--json", "enqueue", "--file", rig.dir().write("jobs.ndjson", ndjson)});
  REQUIRE_MESSAGE(file.exit_code == 0, file.err);
  auto reply = parse(file.out);
  CHECK(reply.at("total").as_int64() == 3);
  CHECK(reply.at("jobs").as_array().size() == 3);
  CHECK(file.out.find("s3cret") == std::string::npos);

  auto stdin_run = rig.ctl({"enqueue", "--file", "-"}, rig.dir().write("ids", "s-1\ns-2\n"));
  CHECK(stdin_run.exit_code == 0);
  CHECK(stdin_run.out.find("s-2\tqueued") != std::string::npos);

  auto common =
      rig.ctl({"enqueue", "--auth-type", "password", "--key-file", pw_file, "--port", "22", "c-1"});
  CHECK(common.exit_code == 0);

  CHECK(rig.ctl({"wait", "--timeout", "60"}).exit_code == 0);
  auto show = parse(rig.ctl({"--json", "show", std::to_string(id_of(reply, 0))}).out);
  CHECK(show.at("job").at("auth_type").as_string() == "keypair");
  CHECK(show.at("job").at("port").as_int64() == 2222);
  auto human = rig.ctl({"show", std::to_string(id_of(reply, 1))});
  CHECK(human.out.find("auth: password (redacted)") != std::string::npos);
  CHECK(human.out.find("s3cret") == std::string::npos);
  CHECK(rig.fake().violations().empty());  // the fake checked every body's auth shape

  // Bad input: one clear line, exit 2 (arguments, file lines and key files alike), nothing sent.
  auto bad_line = rig.ctl({"enqueue", "--file", rig.dir().write("bad", "ok-1\nnot ok\n")});
  CHECK(bad_line.exit_code == 2);
  CHECK(bad_line.err.find(":2: `not ok`: server_id may only hold") != std::string::npos);
  CHECK(rig.ctl({"enqueue"}).exit_code == 2);
  CHECK(rig.ctl({"enqueue", "--auth-type", "password", "x"}).exit_code == 2);
  CHECK(rig.ctl({"enqueue", "--auth-type", "magic", "--key-file", pw_file, "x"}).exit_code == 2);
  auto missing_key =
      rig.ctl({"enqueue", "--auth-type", "password", "--key-file", rig.dir().file("nope"), "x"});
  CHECK(missing_key.exit_code == 2);
  CHECK(missing_key.err.find("cannot read key file") != std::string::npos);
  // A public key or a PuTTY key for the replace form: refused with what to give instead.
  std::string pub = rig.dir().write("id_ed25519.pub", "ssh-ed25519 AAAAC3Nza ops@host\n");
  auto pub_key = rig.ctl({"enqueue", "--auth-type", "keypair", "--key-file", pub, "x"});
  CHECK(pub_key.exit_code == 2);
  CHECK(pub_key.err.find("holds a public key (an id_*.pub file): give the private key file") !=
        std::string::npos);
  CHECK(pub_key.err.find("AAAAC3Nza") == std::string::npos);  // the content is never shown
  std::string ppk =
      rig.dir().write("key.ppk", "PuTTY-User-Key-File-3: ssh-rsa\nEncryption: none\n");
  auto putty = rig.ctl({"enqueue", "--auth-type", "keypair", "--key-file", ppk, "x"});
  CHECK(putty.err.find("is a PuTTY key (.ppk): convert it with PuTTYgen first") !=
        std::string::npos);
}

TEST_CASE("kpsctl list - show - stats - wait in human and JSON form") {
  Rig rig({.task_duration = 20ms});
  rig.fake().set_behavior("bad-1", fake::error_answers(400, -1, "KPS.4016"));
  rig.start();
  std::string ids;
  for (int i = 0; i < 30; ++i) ids += "srv-" + std::to_string(i) + "\n";
  ids += "bad-1\n";
  auto enq = rig.ctl({"enqueue", "--file", rig.dir().write("ids", ids)});
  REQUIRE(enq.exit_code == 0);
  CHECK(rig.ctl({"wait", "--batch", Rig::batch_of(enq), "--timeout", "60"}).exit_code == 1);

  // Paging: three pages of 10 and a last one of 1, nothing twice, nothing missed.
  std::set<std::int64_t> seen;
  std::int64_t after = 0;
  int pages = 0;
  for (;;) {
    auto page = rig.ctl_json({"list", "--limit", "10", "--after", std::to_string(after)});
    for (const auto& j : page.at("jobs").as_array())
      CHECK(seen.insert(j.at("id").as_int64()).second);
    ++pages;
    if (!page.contains("next_after_id")) break;
    after = page.at("next_after_id").as_int64();
  }
  CHECK(seen.size() == 31);
  CHECK(pages == 4);
  auto failed = rig.ctl_json({"list", "--state", "failed"});
  REQUIRE(failed.at("jobs").as_array().size() == 1);
  CHECK(failed.at("jobs").as_array()[0].at("error_code").as_string() == "KPS.4016");
  auto by_server = rig.ctl_json({"list", "--server", "srv-7"});
  REQUIRE(by_server.at("jobs").as_array().size() == 1);
  auto human_list = rig.ctl({"list", "--limit", "5"});
  CHECK(human_list.out.find("ID       STATE") != std::string::npos);
  CHECK(human_list.err.find("(more: --after 5)") != std::string::npos);  // a hint: stderr
  CHECK(human_list.out.find("(more:") == std::string::npos);
  auto none = rig.ctl({"list", "--state", "cancelled"});
  CHECK(none.exit_code == 0);
  CHECK(none.out.empty());
  CHECK(none.err == "No jobs match.\n");

  auto stats = rig.ctl_json({"stats"});
  CHECK(stats.at("states").at("succeeded").as_int64() == 30);
  CHECK(stats.at("states").at("failed").as_int64() == 1);
  CHECK(stats.at("in_flight").as_int64() == 0);
  CHECK(stats.at("paused").as_bool() == false);
  auto human_stats = rig.ctl({"stats"});
  CHECK(human_stats.out.find("succeeded  30") != std::string::npos);
  // What happened (calls started) apart from what kpsd allows itself (the pace).
  CAPTURE(human_stats.out);
  CHECK(std::regex_search(human_stats.out,
                          std::regex("\ncalls      [0-9.]+/s started; pace none \\(auto\\); 429s "
                                     "0.0% of answers in the last minute\n")));
  CHECK(human_stats.out.find("in flight  0 (HTTP calls on the wire now)") != std::string::npos);
  CHECK(stats.at("throttled_share").to_number<double>() == 0);
  CHECK(stats.at("quota").at("holding").as_bool() == false);

  std::int64_t bad_id = failed.at("jobs").as_array()[0].at("id").as_int64();
  auto wait_one = rig.ctl({"--json", "wait", std::to_string(bad_id)});
  CHECK(wait_one.exit_code == 1);
  CHECK(parse(wait_one.out).at("all_succeeded").as_bool() == false);
  auto wait_good = rig.ctl({"wait", "1", "2"});
  CHECK(wait_good.exit_code == 0);
  CHECK(wait_good.out.find("succeeded") != std::string::npos);

  auto show = rig.ctl({"show", std::to_string(bad_id)});
  CHECK(show.out.find("KPS.4016") != std::string::npos);
  CHECK(show.out.find("attempts:") != std::string::npos);
  CHECK(rig.ctl({"show", "0"}).exit_code == 2);
  CHECK(rig.ctl({"show", "4242"}).exit_code == 1);
}

TEST_CASE("kpsctl retry - cancel - pause - resume") {
  Rig rig({.task_duration = 20ms});
  rig.fake().set_behavior("bad-1", fake::error_answers(400, 1, "KPS.4016"));  // fails once
  rig.fake().set_behavior("bad-2", fake::error_answers(400, 1, "KPS.4016"));
  rig.start();
  auto enq = rig.ctl({"enqueue", "bad-1", "bad-2"});
  REQUIRE(enq.exit_code == 0);
  CHECK(rig.ctl({"wait", "--batch", Rig::batch_of(enq), "--timeout", "60"}).exit_code == 1);

  auto one = rig.ctl({"retry", "1"});
  CHECK(one.exit_code == 0);
  CHECK(one.out == "job 1: queued again\n");
  auto all = rig.ctl_json({"retry", "--state", "failed"});
  CHECK(all.at("requeued").as_int64() == 1);  // job 2; job 1 is no longer failed
  CHECK(rig.ctl({"wait", "--timeout", "60"}).exit_code == 0);
  CHECK(rig.fake().calls_for("bad-1") == 2);
  auto again = rig.ctl({"retry", "1"});
  CHECK(again.exit_code == 1);
  CHECK(again.err.find("already succeeded") != std::string::npos);
  CHECK(rig.ctl({"retry"}).exit_code == 2);

  // Pause: nothing is called; the pause survives a restart; resume lets the job go.
  auto paused = rig.ctl({"pause"});
  CHECK(paused.exit_code == 0);
  REQUIRE(rig.ctl({"enqueue", "later-1"}).exit_code == 0);
  std::this_thread::sleep_for(300ms);
  CHECK(rig.fake().calls_for("later-1") == 0);
  CHECK(rig.ctl_json({"stats"}).at("paused").as_bool());
  CHECK(rig.ctl({"stats"}).out.find("PAUSED") != std::string::npos);
  CHECK(rig.stop() == 0);
  rig.start();
  std::this_thread::sleep_for(300ms);
  CHECK(rig.fake().calls_for("later-1") == 0);
  CHECK(rig.log().find("starting paused") != std::string::npos);

  // Cancel while paused: the job never gets called.
  auto jobs = rig.ctl_json({"list", "--server", "later-1"});
  std::int64_t later = jobs.at("jobs").as_array()[0].at("id").as_int64();
  auto later_2 = rig.ctl({"enqueue", "later-2"});
  REQUIRE(later_2.exit_code == 0);
  auto cancel = rig.ctl({"--json", "cancel", std::to_string(later)});
  CHECK(cancel.exit_code == 0);
  CHECK(parse(cancel.out).at("result").as_string() == "cancelled");
  auto twice = rig.ctl({"cancel", std::to_string(later)});
  CHECK(twice.exit_code == 1);
  CHECK(twice.err.find("has already ended") != std::string::npos);
  CHECK(rig.ctl({"resume"}).exit_code == 0);
  CHECK(rig.ctl({"wait", "--batch", Rig::batch_of(later_2), "--timeout", "60"}).exit_code == 0);
  // A cancel is the operator's choice: it does not fail a wait, unless --strict.
  CHECK(rig.ctl({"wait", std::to_string(later)}).exit_code == 0);
  CHECK(rig.ctl({"wait", "--strict", std::to_string(later)}).exit_code == 1);
  CHECK(rig.fake().calls_for("later-1") == 0);
  CHECK(rig.fake().calls_for("later-2") == 1);
  // A cancelled job can be retried.
  CHECK(rig.ctl({"retry", std::to_string(later)}).exit_code == 0);
  CHECK(rig.ctl({"wait", std::to_string(later), "--timeout", "60"}).exit_code == 0);
  CHECK(rig.log().find("pause") != std::string::npos);
  CHECK(std::regex_search(rig.log(),
                          std::regex("control: uid [0-9]+ (\\([^)]+\\) )?pid [0-9]+: cancel job")));
}

TEST_CASE("one unfinished job per server: a retry is refused naming it - sqlite3 cannot add one") {
  Rig rig({.task_duration = 20ms});
  rig.fake().set_behavior("dup-1", fake::error_answers(400, 1, "KPS.4016"));  // fails once
  rig.start();
  REQUIRE(rig.ctl({"enqueue", "dup-1"}).exit_code == 0);
  CHECK(rig.ctl({"wait", "1", "--timeout", "60"}).exit_code == 1);  // job 1 failed
  REQUIRE(rig.ctl({"pause"}).exit_code == 0);
  auto queued = rig.ctl_json({"enqueue", "dup-1"});  // job 2, held by the pause
  REQUIRE(queued.at("jobs").as_array()[0].at("id").as_int64() == 2);
  auto one = rig.ctl({"retry", "1"});
  CHECK(one.exit_code == 1);
  CHECK(one.err.find("job 1: its server has job 2 unfinished") != std::string::npos);
  auto all = rig.ctl({"retry", "--state", "failed"});
  CHECK(all.exit_code == 0);
  CHECK(all.out.find("skipped 1 jobs whose server already has an unfinished job") !=
        std::string::npos);
  auto dup = run_command({"/usr/bin/sqlite3", rig.db_path(), ".timeout 5000",
                          "INSERT INTO jobs(server_id) VALUES ('dup-1')"},
                         rig.dir().path().string());
  CHECK(dup.exit_code != 0);
  CHECK(dup.err.find("UNIQUE constraint failed: jobs.server_id, jobs.one_unfinished") !=
        std::string::npos);
  REQUIRE(rig.ctl({"resume"}).exit_code == 0);
  CHECK(rig.ctl({"wait", "2", "--timeout", "60"}).exit_code == 0);
  CHECK(rig.fake().calls_for("dup-1") == 2);  // job 1's call and job 2's: never a third
}

TEST_CASE("bad request lines get an error naming the problem and the connection stays usable") {
  Rig rig;
  rig.start();
  const std::vector<std::pair<std::string, std::string>> cases{
      {"hello", "request is not valid JSON"},
      {"{", "request is not valid JSON"},
      {"[]", "request must be a JSON object"},
      {"42", "request must be a JSON object"},
      {"{}", "op is missing"},
      {R"({"op":null})", "op must be a string"},
      {R"({"op":"reboot"})", "unknown op \"reboot\""},
      {R"({"op":"enqueue"})", "jobs is missing"},
      {R"({"op":"enqueue","jobs":"a"})", "jobs must be an array"},
      {R"({"op":"enqueue","jobs":[]})", "jobs is empty"},
      {R"({"op":"enqueue","jobs":[{"server_id":""}]})", "jobs[0].server_id is empty"},
      {R"({"op":"enqueue","jobs":[{"server_id":")" + std::string(100, 'x') + R"("}]})",
       "jobs[0].server_id is longer than 64 characters"},
      {R"({"op":"enqueue","jobs":[{"server_id":"a;rm"}]})", "jobs[0].server_id may only hold"},
      {R"({"op":"enqueue","jobs":[{"server_id":1}]})", "jobs[0].server_id must be a string"},
      {R"({"op":"enqueue","jobs":[{"server_id":"a","port":70000}]})",
       "jobs[0].port must be between"},
      {R"({"op":"enqueue","jobs":[{"server_id":"a","auth":{"type":"token","key":"k"}}]})",
       "jobs[0].auth.type must be"},
      {R"({"op":"enqueue","jobs":[{"server_id":"a","auth":{"type":"password","key":7}}]})",
       "jobs[0].auth.key must be a string"},
      {R"({"op":"enqueue","jobs":[{"server_id":"a","auth":{"key":"k"}}]})",
       "jobs[0].auth.type is missing"},
      {R"({"op":"list","limit":-1})", "limit must be between"},
      {R"({"op":"list","state":"done"})", "state \"done\" is not a job state"},
      {R"({"op":"list","after_id":"x"})", "after_id must be an integer"},
      {R"({"op":"show","id":"1"})", "id must be an integer"},
      {R"({"op":"show","id":0})", "id must be between"},
      {R"({"op":"show","id":99})", "no job with id 99"},
      {R"({"op":"retry"})", "give job ids, or state and/or batch"},
      {R"({"op":"retry","ids":[1,"x"]})", "ids[1] must be a job id"},
      {R"({"op":"retry","state":"queued"})", "state must be \"failed\" or \"cancelled\""},
      {R"({"op":"cancel"})", "give job ids or a batch"},
      {R"({"op":"cancel","id":1,"batch":"b"})", "give job ids or a batch"},
      {R"({"op":"enqueue","jobs":[{"server_id":"a"}],"max_failures":"150%"})",
       "max_failures `150%`: a percentage must be over 0% and under 100%"},
      {R"({"op":"pause","now":true})", "unknown field now"},
  };
  UnixClient client(rig.socket_path());
  for (const auto& [line, expected] : cases) {
    CAPTURE(line);
    auto reply = client.request(line);
    REQUIRE(reply.has_value());
    auto o = parse(*reply);
    CHECK(o.at("ok").as_bool() == false);
    CHECK_MESSAGE(std::string(o.at("error").as_string()).starts_with(expected), *reply);
    auto ok = client.request(R"({"op":"stats"})");  // the same connection still serves
    REQUIRE(ok.has_value());
    CHECK(parse(*ok).at("ok").as_bool());
  }
  CHECK(cases.size() >= 20);

  // A line over 1 MiB: an error, then the connection is closed. The daemon lives on.
  UnixClient big(rig.socket_path());
  big.send_all(std::string(1024 * 1024 + 10, 'x'));
  auto reply = big.read_line();
  REQUIRE(reply.has_value());
  CHECK(parse(*reply).at("error").as_string() == "request line longer than 1 MiB; closing");
  CHECK(big.closed_by_server(5s));
  UnixClient after(rig.socket_path());
  CHECK(after.request(R"({"op":"stats"})").has_value());
}

TEST_CASE("100 clients at once and one that never reads do not stall the daemon") {
  Rig rig;
  rig.start();
  std::string ids;
  for (int i = 0; i < 2000; ++i) ids += "many-" + std::to_string(i) + "\n";
  REQUIRE(rig.ctl({"enqueue", "--file", rig.dir().write("ids", ids)}).exit_code == 0);

  // The stalled client asks for big replies and never reads them.
  UnixClient stalled(rig.socket_path());
  std::string big_request = R"({"op":"list","limit":10000})"
                            "\n";
  for (int i = 0; i < 50; ++i) {
    if (!stalled.send_all(big_request)) break;
  }

  std::atomic<int> answered{0};
  std::vector<std::thread> clients;
  auto started = std::chrono::steady_clock::now();
  for (int c = 0; c < 100; ++c) {
    clients.emplace_back([&] {
      UnixClient client(rig.socket_path());
      bool all = true;
      for (int i = 0; i < 5; ++i) {
        auto r = client.request(R"({"op":"stats"})");
        all = all && r && r->find("\"ok\":true") != std::string::npos;
      }
      if (all) ++answered;
    });
  }
  for (auto& t : clients) t.join();
  auto took = std::chrono::steady_clock::now() - started;
  CHECK(answered == 100);
  MESSAGE("100 clients x 5 requests answered in "
          << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
          << " ms while one client stalled");
  CHECK(took < 10s);  // far below the stalled client's 10 s write deadline
  // Still not reading: after the 10 s write deadline the daemon drops the stalled client.
  std::this_thread::sleep_until(started + 12s);
  CHECK(stalled.closed_by_server(5s));
  CHECK(rig.ctl({"stats"}).exit_code == 0);
}

TEST_CASE("the metrics endpoint counts calls and jobs as they complete") {
  Rig rig({.task_duration = 20ms, .config = {{"metrics.listen", "127.0.0.1:0"}}});
  rig.fake().set_behavior("m-bad", fake::error_answers(400, -1, "KPS.4016"));
  rig.fake().set_behavior("m-flaky", fake::error_answers(503, 1));
  rig.start();
  auto port = rig.metrics_port();
  // The start-up line says where both are.
  CHECK(rig.log().find(", metrics on http://127.0.0.1:" + std::to_string(port) +
                       "/metrics, status page on http://127.0.0.1:" + std::to_string(port) +
                       "/\n") != std::string::npos);
  auto before = http_get(port, "/metrics");
  CHECK(before.starts_with("HTTP/1.1 200"));
  CHECK(before.find("kpsd_jobs{state=\"succeeded\"} 0") != std::string::npos);
  CHECK(before.find("kpsd_rate_limit_per_second 0") != std::string::npos);

  auto enq = rig.ctl({"enqueue", "m-1", "m-2", "m-3", "m-bad", "m-flaky"});
  REQUIRE(enq.exit_code == 0);
  CHECK(rig.ctl({"wait", "--batch", Rig::batch_of(enq), "--timeout", "60"}).exit_code == 1);
  auto after = http_get(port, "/metrics");
  CHECK(after.find("kpsd_jobs{state=\"succeeded\"} 4") != std::string::npos);
  CHECK(after.find("kpsd_jobs{state=\"failed\"} 1") != std::string::npos);
  CHECK(after.find("kpsd_calls_total{outcome=\"delivered\"} 4") != std::string::npos);
  CHECK(after.find("kpsd_calls_total{outcome=\"permanent\"} 1") != std::string::npos);
  CHECK(after.find("kpsd_calls_total{outcome=\"retryable\"} 1") != std::string::npos);
  CHECK(after.find("kpsd_retries_total 1") != std::string::npos);
  CHECK(after.find("kpsd_task_polls_total{outcome=\"succeeded\"} 4") != std::string::npos);
  CHECK(after.find("kpsd_http_request_duration_seconds_count{operation=\"disassociate\"} 6") !=
        std::string::npos);
  CHECK(
      after.find(
          "kpsd_http_request_duration_seconds_bucket{operation=\"disassociate\",le=\"+Inf\"} 6") !=
      std::string::npos);
  CHECK(http_get(port, "/other").starts_with("HTTP/1.1 404"));
  CHECK(after.find(token) == std::string::npos);
  // HEAD as GET without a body, for every GET route; other methods 405 with Allow.
  for (const char* path : {"/", "/metrics", "/api/overview", "/static/app.js"}) {
    CAPTURE(path);
    std::string head = http_request(port, "HEAD", path);
    CHECK(head.starts_with("HTTP/1.1 200"));
    CHECK(head.find("Content-Length: 0\r\n") == std::string::npos);
    CHECK(head.ends_with("\r\n\r\n"));  // no body
  }
  CHECK(http_request(port, "HEAD", "/other").starts_with("HTTP/1.1 404"));
  for (const char* method : {"POST", "PUT", "DELETE"}) {
    std::string refused = http_request(port, method, "/metrics");
    CHECK(refused.starts_with("HTTP/1.1 405"));
    CHECK(refused.find("Allow: GET, HEAD\r\n") != std::string::npos);
  }
}

TEST_CASE(
    "metrics for alerting: known labels from 0 - finished jobs - blocked reason - every name the "
    "rules use") {
  Rig rig({.task_duration = 20ms, .config = {{"metrics.listen", "127.0.0.1:0"}}});
  rig.fake().set_behavior("a-bad", fake::error_answers(400, -1, "KPS.4016"));
  rig.start();
  auto port = rig.metrics_port();
  std::string fresh = http_get(port, "/metrics");
  for (const char* line :
       {"kpsd_calls_total{outcome=\"delivered\"} 0", "kpsd_calls_total{outcome=\"blocked\"} 0",
        "kpsd_calls_total{outcome=\"cancelled\"} 0", "kpsd_task_polls_total{outcome=\"failed\"} 0",
        "kpsd_jobs_finished_total{state=\"failed\"} 0", "kpsd_blocked{reason=\"credentials\"} 0",
        "kpsd_blocked{reason=\"tls\"} 0", "kpsd_blocked{reason=\"descriptors\"} 0",
        "kpsd_oldest_queued_age_seconds 0", "kpsd_jobs_pruned_total 0",
        "kpsd_http_request_duration_seconds_count{operation=\"failed_tasks\"} 0",
        "kpsd_build_info{version=\"" KPSD_VERSION "\"} 1"}) {
    CHECK_MESSAGE(fresh.find(std::string(line) + "\n") != std::string::npos, line);
  }

  // Every kpsd_ name in the shipped rules and dashboard is served.
  std::string shipped = slurp(KPSD_SOURCE_DIR "/conf/prometheus/kpsd-alerts.yml") +
                        slurp(KPSD_SOURCE_DIR "/conf/grafana/kpsd-dashboard.json");
  std::set<std::string> names;
  const std::regex metric_name("kpsd_[a-z_]+");
  for (std::sregex_iterator it(shipped.begin(), shipped.end(), metric_name), end; it != end; ++it) {
    names.insert(it->str());
  }
  CHECK(names.size() >= 12);
  for (const auto& name : names) {
    bool served = fresh.find("\n# TYPE " + name + " ") != std::string::npos ||
                  fresh.find("\n" + name + "{") != std::string::npos;
    CHECK_MESSAGE(served, name << " is used by conf/ but kpsd does not serve it");
  }
  if (::access("/usr/bin/promtool", X_OK) == 0) {
    std::string scrape = rig.dir().write("scrape.txt", fresh.substr(fresh.find("\r\n\r\n") + 4));
    auto lint = run_command({"/bin/sh", "-c", "promtool check metrics < " + scrape},
                            rig.dir().path().string(), 30s);
    CHECK_MESSAGE(lint.exit_code == 0, lint.out << lint.err);
  } else {
    MESSAGE("SKIPPED: promtool check metrics (promtool is not installed)");
  }

  auto enq = rig.ctl({"enqueue", "a-1", "a-2", "a-bad"});
  REQUIRE(enq.exit_code == 0);
  rig.ctl({"wait", "--batch", Rig::batch_of(enq), "--timeout", "60"});
  std::string after = http_get(port, "/metrics");
  CHECK(after.find("kpsd_jobs_finished_total{state=\"succeeded\"} 2\n") != std::string::npos);
  CHECK(after.find("kpsd_jobs_finished_total{state=\"failed\"} 1\n") != std::string::npos);
  CHECK(after.find("kpsd_retries_total 0\n") != std::string::npos);

  // The token file goes away: calls pause with reason credentials, and a queued job waits.
  ::unlink(rig.dir().file("token").c_str());
  rig.daemon().signal(SIGHUP);
  REQUIRE(rig.ctl({"enqueue", "a-3"}).exit_code == 0);
  wait_until(
      [&] {
        return http_get(port, "/metrics").find("kpsd_blocked{reason=\"credentials\"} 1\n") !=
               std::string::npos;
      },
      20s, "kpsd_blocked{reason=credentials} 1");
  std::string blocked = http_get(port, "/metrics");
  CHECK(blocked.find("kpsd_blocked{reason=\"tls\"} 0\n") != std::string::npos);
  CHECK(blocked.find("kpsd_calls_total{outcome=\"blocked\"} ") != std::string::npos);
  CHECK(blocked.find("kpsd_retries_total 0\n") != std::string::npos);  // blocked is not a retry
  CHECK(rig.stop() == 0);
}

TEST_CASE("systemd notifications: READY then STATUS then STOPPING") {
  Rig rig;
  NotifyListener notify(rig.dir().file("notify.sock"));
  auto receive = [&](std::chrono::milliseconds timeout) { return notify.receive(timeout); };
  rig.start({notify.env(), "WATCHDOG_USEC=2000000"});
  std::string all;
  for (int i = 0; i < 5 && all.find("WATCHDOG=1") == std::string::npos; ++i)
    all += receive(5s) + "\n";
  CHECK(all.find("READY=1") != std::string::npos);
  CHECK(all.find("STATUS=queued 0, running 0") != std::string::npos);
  CHECK(all.find("WATCHDOG=1") != std::string::npos);
  CHECK(rig.stop() == 0);
  std::string stopping;
  for (int i = 0; i < 5 && stopping.find("STOPPING=1") == std::string::npos; ++i)
    stopping += receive(5s);
  CHECK(stopping.find("STOPPING=1") != std::string::npos);
}

TEST_CASE("SIGHUP applies concurrency and rate_per_second and names the keys that need a restart") {
  // Under a 1024-descriptor limit, so that a concurrency too high for it can be refused.
  RigOptions options{.call_delay = 150ms};
  if (std::filesystem::exists("/usr/bin/prlimit")) {
    options.launcher = {"/usr/bin/prlimit", "--nofile=1024:1024", "--"};
  }
  Rig rig(options);
  rig.start();
  std::string conf = slurp(rig.config_path());
  for (auto [from, to] : {std::pair{"concurrency = 32", "concurrency = 2"},
                          std::pair{"rate_per_second = 0", "rate_per_second = 20"},
                          std::pair{"request_timeout_ms = 2000", "request_timeout_ms = 3000"}}) {
    conf.replace(conf.find(from), std::string(from).size(), to);
  }
  rig.dir().write("kpsd.conf", conf);
  rig.daemon().signal(SIGHUP);
  wait_until([&] { return rig.log().find("SIGHUP: applied") != std::string::npos; }, 10s,
             "the SIGHUP log line");
  CHECK(
      rig.log().find("SIGHUP: applied queue.concurrency 32 -> 2, queue.rate_per_second 0 -> 20") !=
      std::string::npos);
  CHECK(rig.log().find("SIGHUP: these changes need a restart (systemctl restart kpsd): "
                       "kps.request_timeout_ms 2000 -> 3000") != std::string::npos);
  CHECK(rig.ctl_json({"stats"}).at("configured_rate_per_second").to_number<double>() == 20);

  std::vector<std::string> args{"enqueue"};
  for (int i = 0; i < 12; ++i) args.push_back("hup-c-" + std::to_string(i));
  auto enq = rig.ctl(args);
  REQUIRE(enq.exit_code == 0);
  std::int64_t most = 0;
  for (int i = 0; i < 40; ++i) {
    most = std::max(most, rig.ctl_json({"stats"}).at("in_flight").as_int64());
    std::this_thread::sleep_for(25ms);
  }
  CHECK(most >= 1);
  CHECK(most <= 2);  // the new concurrency holds
  CHECK(rig.ctl({"wait", "--batch", Rig::batch_of(enq), "--timeout", "60"}).exit_code == 0);

  if (options.launcher.empty()) {
    MESSAGE("SKIPPED: a concurrency over the open-file limit (prlimit is not installed)");
    CHECK(rig.stop() == 0);
    return;
  }
  // Too high for the open-file limit: refused, the running value kept.
  rig.dir().write("kpsd.conf",
                  conf.replace(conf.find("concurrency = 2"), 15, "concurrency = 4096"));
  rig.daemon().signal(SIGHUP);
  wait_until([&] { return rig.log().find("keeping 2") != std::string::npos; }, 10s, "the refusal");
  CHECK(rig.log().find("SIGHUP: queue.concurrency = 4096 needs up to") != std::string::npos);
  CHECK(rig.daemon().running());
  CHECK(rig.stop() == 0);
}

TEST_CASE("SIGHUP reloads the log level and the credentials") {
  Rig rig;
  rig.start();
  std::string conf = slurp(rig.config_path());
  conf.replace(conf.find("level = info"), 12, "level = debug");
  rig.dir().write("kpsd.conf", conf);
  rig.daemon().signal(SIGHUP);
  for (int i = 0; i < 200 && rig.log().find("SIGHUP: reloaded") == std::string::npos; ++i) {
    std::this_thread::sleep_for(10ms);
  }
  CHECK(rig.log().find("SIGHUP: reloaded log level (debug), credentials and CA file") !=
        std::string::npos);
  REQUIRE(rig.ctl({"enqueue", "hup-1"}).exit_code == 0);
  CHECK(rig.ctl({"wait", "--timeout", "30"}).exit_code == 0);
  CHECK(rig.log().find("debug") != std::string::npos);

  // A broken file on SIGHUP is reported and the running configuration kept.
  rig.dir().write("kpsd.conf", conf + "bogus = 1\n");
  rig.daemon().signal(SIGHUP);
  for (int i = 0;
       i < 200 && rig.log().find("keeping the running configuration") == std::string::npos; ++i) {
    std::this_thread::sleep_for(10ms);
  }
  CHECK(rig.log().find("unknown key; keeping the running configuration") != std::string::npos);
  CHECK(rig.daemon().running());
}

TEST_CASE("a relative token_file is read from $CREDENTIALS_DIRECTORY") {
  Rig rig({.config = {{"auth.token_file", "kps-token"}}});
  rig.dir().write("kps-token", token + "\n");
  rig.start({"CREDENTIALS_DIRECTORY=" + rig.dir().path().string()});
  REQUIRE(rig.ctl({"enqueue", "cred-1"}).exit_code == 0);
  CHECK(rig.ctl({"wait", "--timeout", "30"}).exit_code == 0);
  CHECK(rig.fake().violations().empty());
}

TEST_CASE("the systemd unit passes systemd-analyze verify") {
  const std::string analyze = "/usr/bin/systemd-analyze";
  if (::access(analyze.c_str(), X_OK) != 0) {
    MESSAGE("SKIPPED: systemd-analyze is not installed here");
    return;
  }
  TempDir dir;
  std::string unit = slurp(KPSD_UNIT_FILE);
  REQUIRE(unit.find("Type=notify") != std::string::npos);
  // Verify against the built binary: the installed path does not exist in the build tree.
  auto at = unit.find("ExecStart=");
  auto space = unit.find(" --config", at);
  unit.replace(at, space - at, std::string("ExecStart=") + KPSD_BIN);
  at = unit.find("ExecReload=");
  space = unit.find(" --socket", at);
  unit.replace(at, space - at, std::string("ExecReload=") + KPSCTL_BIN);
  std::string path = dir.write("kpsd.service", unit);
  auto r = run_command({analyze, "verify", path}, dir.path().string(), 60s);
  if (r.err.find("Failed to") != std::string::npos && r.err.find("bus") != std::string::npos) {
    MESSAGE("SKIPPED: systemd-analyze cannot run in this container: " << r.err);
    return;
  }
  CHECK_MESSAGE(r.exit_code == 0, r.out << r.err);
  CHECK(r.err.find("kpsd.service") == std::string::npos);  // no warning about the unit
  for (const char* key :
       {"StateDirectory=kpsd", "RuntimeDirectory=kpsd", "LoadCredential=kpsd-iam-password:",
        "LoadCredential=kpsd-ak:", "LoadCredential=kpsd-sk:", "RuntimeDirectoryPreserve=yes",
        "RestartPreventExitStatus=65 78", "ProtectSystem=strict", "NoNewPrivileges=yes",
        "PrivateTmp=yes", "PrivateDevices=yes", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "SystemCallFilter=@system-service", "UMask=0077", "CapabilityBoundingSet=\n",
        "TimeoutStopSec=45s", "WatchdogSec=", "kpsctl --socket %t/kpsd/kpsd.sock reload\n"}) {
    CHECK_MESSAGE(unit.find(key) != std::string::npos, key);
  }
  // The audit line needs callers' real uids, which a user namespace hides (see the unit).
  CHECK(unit.find("\nPrivateUsers=") == std::string::npos);
}

TEST_CASE(
    "kpsctl says what is wrong: an unknown command - a key file without its type - no permission") {
  Rig rig;
  rig.start();
  auto bogus = rig.ctl({"bogus"});
  CHECK(bogus.exit_code == 2);
  CHECK(bogus.err.find("kpsctl: error: unknown command `bogus`; the commands are: enqueue, list") !=
        std::string::npos);

  // Without --auth-type the key would be dropped and the job sent in reset form: refused.
  auto keyed = rig.ctl({"enqueue", "--key-file", rig.dir().write("key", "pw\n"), "srv-key"});
  CHECK(keyed.exit_code == 2);
  CHECK(keyed.err.find("--key-file needs --auth-type") != std::string::npos);
  CHECK(rig.ctl_json({"stats"}).at("total").as_int64() == 0);

  // Another user, not in the socket's group: 77 and the reason, not "is kpsd running?".
  if (::geteuid() != 0) {
    MESSAGE("SKIPPED: the permission check needs root to run kpsctl as another user");
    return;
  }
  if (::access("/usr/bin/setpriv", X_OK) != 0) {
    MESSAGE("SKIPPED: setpriv (util-linux) is not installed");
    return;
  }
  auto denied = run_command({"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                             KPSCTL_BIN, "--socket", rig.socket_path(), "stats"},
                            "/", std::chrono::seconds(20));
  CHECK(denied.exit_code == 77);
  CHECK(denied.err.find("permission denied on kpsd's control socket") != std::string::npos);
  CHECK(denied.err.find("is kpsd running") == std::string::npos);
}

TEST_CASE("log lines: a syslog priority under journald - UTC times otherwise - the server named") {
  Rig journal({.task_duration = 20ms});
  journal.fake().set_behavior("srv-bad", fake::error_answers(400, -1, "KPS.4016"));
  journal.start({"JOURNAL_STREAM=8:12345"});
  REQUIRE(journal.ctl({"enqueue", "srv-ok", "srv-bad"}).exit_code == 0);
  journal.ctl({"wait", "--timeout", "30"});
  std::string log = journal.log();
  std::istringstream lines(log);
  int count = 0;
  for (std::string line; std::getline(lines, line); ++count) {
    CHECK_MESSAGE(std::regex_search(line, std::regex("^<[2-7]>")), line);
  }
  CHECK(count >= 4);
  CHECK(std::regex_search(log, std::regex("(^|\n)<6>info: kpsd [0-9][^ ]* ready: ")));
  CHECK(std::regex_search(log,
                          std::regex("\n<4>warning: job [0-9]+ \\(srv-bad\\): failed: KPS.4016")));
  // A job that ends on its task poll is named by its server, not only by its task.
  CHECK(std::regex_search(
      log, std::regex("\n<6>info: job [0-9]+ \\(srv-ok, task fake-task-[0-9]+\\): succeeded")));
  CHECK(journal.stop() == 0);

  Rig plain;
  plain.start();
  CHECK(std::regex_search(
      plain.log(),
      std::regex("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z info ")));
}

TEST_CASE("kpsctl enqueue --file with stderr on a terminal still writes every job line to a file") {
  if (::access("/usr/bin/script", X_OK) != 0) {
    MESSAGE("SKIPPED: script (util-linux) is not installed to give kpsctl a terminal");
    return;
  }
  Rig rig;
  rig.start();
  std::string ids = rig.dir().write("ids", "tty-1\ntty-2\ntty-3\n");
  std::string map = rig.dir().file("map.tsv");
  // script(1) runs the command on a pseudo-terminal: stderr is a terminal, stdout the file.
  std::string command = std::string(KPSCTL_BIN) + " --socket " + rig.socket_path() +
                        " enqueue --file " + ids + " > " + map;
  auto r = run_command({"/usr/bin/script", "-qec", command, "/dev/null"}, rig.dir().path().string(),
                       std::chrono::seconds(30));
  REQUIRE_MESSAGE(r.exit_code == 0, r.out << r.err);
  CHECK(r.out.find("enqueued 3 jobs") !=
        std::string::npos);  // progress and summary, on the terminal
  std::string lines = test::TempDir::slurp_file(map);
  CAPTURE(lines);
  CHECK(std::regex_search(lines, std::regex("^[0-9]+\ttty-1\tqueued\n[0-9]+\ttty-2\tqueued\n"
                                            "[0-9]+\ttty-3\tqueued\n$")));
}

TEST_CASE("kpsd --check-config also reads the credential and CA files: a missing one is exit 78") {
  Rig good;
  auto ok = run_command({KPSD_BIN, "--config", good.config_path(), "--check-config"},
                        good.dir().path().string(), std::chrono::seconds(20));
  CHECK(ok.exit_code == 0);
  CHECK(ok.out.find(": ok") != std::string::npos);

  Rig no_token({.config = {{"auth.token_file", "/nonexistent/kps-token"}}});
  auto missing = run_command({KPSD_BIN, "--config", no_token.config_path(), "--check-config"},
                             no_token.dir().path().string(), std::chrono::seconds(20));
  CHECK(missing.exit_code == 78);
  CHECK(missing.err.find("cannot read token file /nonexistent/kps-token") != std::string::npos);
  CHECK(missing.out.empty());

  // The CA file is read for an https endpoint (nothing is called: port 9 is never reached).
  Rig no_ca({.config = {{"kps.endpoint", "https://127.0.0.1:9"},
                        {"kps.ca_file", "/nonexistent/ca.pem"}}});
  auto ca = run_command({KPSD_BIN, "--config", no_ca.config_path(), "--check-config"},
                        no_ca.dir().path().string(), std::chrono::seconds(20));
  CHECK(ca.exit_code == 78);
  CHECK(ca.err.find("/nonexistent/ca.pem") != std::string::npos);
}

TEST_CASE("kpsd --check-config --preflight makes one authenticated read and names what is wrong") {
  Rig rig;
  auto preflight = [&](const std::string& config) {
    return run_command({KPSD_BIN, "--config", config, "--check-config", "--preflight"},
                       rig.dir().path().string(), std::chrono::seconds(30));
  };
  auto ok = preflight(rig.config_path());
  CHECK_MESSAGE(ok.exit_code == 0, ok.err);
  CHECK(std::regex_search(ok.out, std::regex(": preflight ok: http://127.0.0.1:[0-9]+ accepted the "
                                             "credentials \\(GET failed-tasks: HTTP 200 in "
                                             "[0-9]+ ms, 0 failed tasks on record")));
  CHECK(rig.fake().disassociate_calls() == 0);  // read-only
  CHECK(rig.fake().violations().empty());

  // A token the service refuses: 77, with the gateway's code.
  rig.dir().write("token", "not-the-token\n");
  auto refused = preflight(rig.config_path());
  CHECK(refused.exit_code == 77);
  CHECK(refused.err.find("preflight credentials refused: HTTP 401 APIGW.0301") !=
        std::string::npos);
  CHECK(refused.err.find("not-the-token") == std::string::npos);
  rig.dir().write("token", std::string(token) + "\n");

  // Another project: 404 names the keys to check.
  std::string conf = slurp(rig.config_path());
  std::string other = conf;
  other.replace(other.find(project), 32, std::string(32, 'a'));
  auto wrong = preflight(rig.dir().write("other.conf", other));
  CHECK(wrong.exit_code == 78);
  CHECK(wrong.err.find("HTTP 404 APIGW.0101") != std::string::npos);
  CHECK(wrong.err.find("check kps.endpoint and kps.project_id") != std::string::npos);

  // Nobody listening: 69.
  std::string closed = conf;
  std::smatch m;
  REQUIRE(std::regex_search(conf, m, std::regex("endpoint = (http://127.0.0.1:[0-9]+)")));
  closed.replace(closed.find(m[1].str()), m[1].length(), "http://127.0.0.1:9");
  auto away = preflight(rig.dir().write("closed.conf", closed));
  CHECK(away.exit_code == 69);
  CHECK(away.err.find("cannot reach http://127.0.0.1:9") != std::string::npos);

  auto alone = run_command({KPSD_BIN, "--config", rig.config_path(), "--preflight"},
                           rig.dir().path().string(), std::chrono::seconds(10));
  CHECK(alone.exit_code == 64);  // --preflight needs --check-config
}

namespace {
// The body of an HTTP answer from http_get, parsed as JSON.
json::object api_json(std::uint16_t port, const std::string& path) {
  std::string answer = http_get(port, path);
  auto body = answer.find("\r\n\r\n");
  REQUIRE_MESSAGE(body != std::string::npos, answer);
  return json::parse(answer.substr(body + 4)).as_object();
}
}  // namespace

TEST_CASE("the status page's API: overview - failures paged and filtered - job detail - headers") {
  Rig rig({.task_duration = 20ms, .config = {{"metrics.listen", "127.0.0.1:0"}}});
  rig.fake().set_behavior("w-bad-1", fake::error_answers(400, -1, "KPS.4016"));
  rig.fake().set_behavior("w-bad-2", fake::error_answers(400, -1, "KPS.6004"));
  rig.start();
  auto port = rig.metrics_port();
  std::string key_file = rig.dir().write("pw", "page-secret-pw\n");
  auto enq = rig.ctl({"enqueue", "--batch", "web", "--auth-type", "password", "--key-file",
                      key_file, "w-1", "w-2", "w-bad-1", "w-bad-2"});
  REQUIRE(enq.exit_code == 0);
  rig.ctl({"wait", "--batch", "web", "--timeout", "60"});

  std::string page = http_get(port, "/");
  CHECK(page.starts_with("HTTP/1.1 200"));
  CHECK(page.find("Content-Security-Policy: default-src 'none'; script-src 'self';") !=
        std::string::npos);
  CHECK(page.find("X-Content-Type-Options: nosniff") != std::string::npos);
  CHECK(page.find("<script src=\"/static/app.js\" defer></script>") != std::string::npos);
  CHECK(page.find("<script>") == std::string::npos);  // no inline script
  CHECK(http_get(port, "/static/app.js").find("Content-Type: text/javascript") !=
        std::string::npos);
  CHECK(http_get(port, "/static/nope.js").starts_with("HTTP/1.1 404"));
  CHECK(http_get(port, "/api/nope").starts_with("HTTP/1.1 404"));

  auto overview = api_json(port, "/api/overview");
  auto stats = rig.ctl_json({"stats"});
  CHECK(overview.at("total").as_int64() == stats.at("total").as_int64());
  CHECK(overview.at("states").at("failed").as_int64() == 2);
  CHECK(overview.at("batches").as_array()[0].at("name").as_string() == "web");
  CHECK(overview.at("batches").as_array()[0].at("states").at("succeeded").as_int64() == 2);
  CHECK(overview.at("history").as_array().size() == 360);
  std::int64_t finished = 0;
  for (const auto& minute : overview.at("history").as_array()) {
    finished += minute.at("succeeded").as_int64() + minute.at("failed").as_int64();
  }
  CHECK(finished == 4);
  CHECK(overview.at("blocked").is_null());

  auto failures = api_json(port, "/api/failures?batch=web");
  auto jobs = failures.at("jobs").as_array();
  REQUIRE(jobs.size() == 2);
  CHECK(jobs[0].at("error_code").as_string() == "KPS.4016");
  CHECK(jobs[1].at("error_code").as_string() == "KPS.6004");
  CHECK(jobs[0].at("last_request_id").is_string());
  auto paged = api_json(port, "/api/failures?batch=web&state=any&limit=3");
  CHECK(paged.at("jobs").as_array().size() == 3);
  std::int64_t next = paged.at("next_after_id").as_int64();
  auto rest =
      api_json(port, "/api/failures?batch=web&state=any&limit=3&after=" + std::to_string(next));
  CHECK(rest.at("jobs").as_array().size() == 1);
  CHECK(http_get(port, "/api/failures?limit=0").starts_with("HTTP/1.1 400"));
  CHECK(http_get(port, "/api/failures?state=bogus").starts_with("HTTP/1.1 400"));
  CHECK(http_get(port, "/api/failures?batch=nope").starts_with("HTTP/1.1 404"));

  std::int64_t id = jobs[0].at("id").as_int64();
  auto detail = api_json(port, "/api/jobs/" + std::to_string(id));
  CHECK(detail.at("job").at("auth_type").as_string() == "password");
  CHECK(detail.at("attempts").as_array().size() == 1);
  CHECK(http_get(port, "/api/jobs/999999").starts_with("HTTP/1.1 404"));
  CHECK(http_get(port, "/api/jobs/x").starts_with("HTTP/1.1 400"));

  // No secret is ever served: the key, the token.
  for (const char* path :
       {"/api/overview", "/api/failures?state=any", "/api/jobs/1", "/api/jobs/3"}) {
    std::string answer = http_get(port, path);
    CHECK(answer.find("page-secret-pw") == std::string::npos);
    CHECK(answer.find(token) == std::string::npos);
  }
  CHECK(rig.stop() == 0);
}
