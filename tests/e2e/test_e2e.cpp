// End to end: the built kpsd and kpsctl against the fake KPS on 127.0.0.1.
#include "e2e_rig.hpp"

#include <boost/json.hpp>

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <sys/stat.h>

using namespace kpsd;
using namespace kpsd::test;
using namespace std::chrono_literals;
namespace json = boost::json;

TEST_CASE("1000 jobs from kpsctl enqueue --file all succeed each server called exactly once") {
  Rig rig({.fake = {.task_duration = 30ms}});
  rig.start();
  std::string ids;
  for (int i = 0; i < 1000; ++i) ids += "srv-" + std::to_string(i) + "\n";
  std::string file = rig.dir().write("servers.txt", ids);
  auto enq = rig.ctl({"enqueue", "--file", file});
  REQUIRE_MESSAGE(enq.exit_code == 0, enq.err);
  CHECK(enq.err.find(": enqueued 1000 jobs (1000 new, 0 already queued)") != std::string::npos);
  CHECK(enq.out.find("enqueued") == std::string::npos);  // stdout: the job lines only

  auto wait = rig.ctl({"wait", "--timeout", "150"});
  CHECK_MESSAGE(wait.exit_code == 0, wait.out << wait.err);

  auto rows = read_jobs(rig.db_path());
  REQUIRE(rows.size() == 1000);
  int succeeded = 0;
  for (const auto& [id, row] : rows) {
    bool ok = row.state == "succeeded" && !row.task_id.empty() &&
              row.task_status == "SUCCESS_UNBIND" && row.attempts == 1 && row.attempt_rows == 1 &&
              rig.fake().calls_for(id) == 1;
    if (!ok) {
      MESSAGE(id << ": " << row.state << " task " << row.task_id << " " << row.task_status
                 << " calls " << rig.fake().calls_for(id));
    }
    succeeded += ok;
  }
  CHECK(succeeded == 1000);
  CHECK(rig.fake().disassociate_calls() == 1000);
  CHECK(rig.fake().violations().empty());
  CHECK(rig.stop() == 0);
}

TEST_CASE("a 400 ends failed with its error_code / a 202+FAILED is retried and then succeeds") {
  Rig rig;
  rig.fake().set_behavior("srv-gone", fake::error_answers(400, -1, "KPS.4016"));
  rig.fake().set_behavior("srv-flaky", fake::failed_deliveries(2));
  rig.start();
  auto enq = rig.ctl({"--json", "enqueue", "srv-gone", "srv-flaky", "srv-fine"});
  REQUIRE_MESSAGE(enq.exit_code == 0, enq.err);
  auto jobs = json::parse(enq.out).at("jobs").as_array();
  REQUIRE(jobs.size() == 3);

  auto wait = rig.ctl({"wait", "--batch", Rig::batch_of(enq), "--timeout", "60"});
  CHECK(wait.exit_code == 1);  // one job of the batch failed: wait says so

  auto rows = read_jobs(rig.db_path());
  CHECK(rows["srv-gone"].state == "failed");
  CHECK(rows["srv-gone"].error_code == "KPS.4016");
  CHECK(rows["srv-gone"].attempt_rows == 1);
  CHECK(rig.fake().calls_for("srv-gone") == 1);

  CHECK(rows["srv-flaky"].state == "succeeded");
  CHECK(rows["srv-flaky"].task_status == "SUCCESS_UNBIND");
  CHECK(rows["srv-flaky"].attempts == 3);
  CHECK(rows["srv-flaky"].attempt_rows == 3);
  CHECK(rig.fake().calls_for("srv-flaky") == 3);
  CHECK(rows["srv-fine"].state == "succeeded");

  // show: the attempts of the flaky job, FAILED twice, then delivered.
  auto flaky_id = jobs[1].at("id").as_int64();
  auto show = rig.ctl_json({"show", std::to_string(flaky_id)});
  auto attempts = show.at("attempts").as_array();
  REQUIRE(attempts.size() == 3);
  CHECK(attempts[0].at("delivery_status").as_string() == "FAILED");
  CHECK(attempts[0].at("http_status").as_int64() == 202);
  CHECK(attempts[0].at("request_id").as_string().starts_with("fake-req-"));
  CHECK(attempts[2].at("delivery_status").as_string() == "SUCCESS");
  CHECK_FALSE(attempts[2].at("task_id").is_null());

  auto human = rig.ctl({"show", std::to_string(flaky_id)});
  CHECK(human.exit_code == 0);
  CHECK(human.out.find("SUCCESS_UNBIND") != std::string::npos);
  auto list = rig.ctl({"list", "--state", "failed"});
  CHECK(list.out.find("srv-gone") != std::string::npos);
  CHECK(list.out.find("KPS.4016") != std::string::npos);
  CHECK(list.out.find("srv-flaky") == std::string::npos);
  CHECK(rig.fake().violations().empty());
}

TEST_CASE("rows inserted with the sqlite3 shell while kpsd runs are picked up and succeed") {
  Rig rig;
  rig.start();
  auto ins = run_command({"/usr/bin/sqlite3", "-cmd", ".timeout 5000", rig.db_path(),
                          "INSERT INTO jobs(server_id) VALUES ('ext-1'), ('ext-2');"},
                         rig.dir().path().string());
  REQUIRE_MESSAGE(ins.exit_code == 0, ins.err);
  auto wait = rig.ctl({"wait", "--timeout", "60"});
  CHECK_MESSAGE(wait.exit_code == 0, wait.out << wait.err);
  auto rows = read_jobs(rig.db_path());
  CHECK(rows["ext-1"].state == "succeeded");
  CHECK(rows["ext-2"].state == "succeeded");
  CHECK(rows["ext-2"].task_status == "SUCCESS_UNBIND");
  CHECK(rig.fake().calls_for("ext-1") == 1);
}

TEST_CASE("enqueueing a server that already has an open job returns that job") {
  // Tasks stay RUNNING long enough for the second enqueue to see the open job.
  Rig rig({.fake = {.task_duration = 5000ms}});
  rig.start();
  auto first = rig.ctl_json({"enqueue", "srv-dup"});
  auto second = rig.ctl_json({"enqueue", "srv-dup"});
  auto a = first.at("jobs").as_array()[0].as_object();
  auto b = second.at("jobs").as_array()[0].as_object();
  CHECK(a.at("existing").as_bool() == false);
  CHECK(b.at("existing").as_bool() == true);
  CHECK(a.at("id") == b.at("id"));
}

TEST_CASE("kpsctl: stats and list in both modes / unknown job / daemon not running gives 69") {
  Rig rig;
  rig.start();
  CHECK(rig.ctl({"enqueue", "srv-a", "srv-b"}).exit_code == 0);
  CHECK(rig.ctl({"wait", "--timeout", "60"}).exit_code == 0);
  auto stats = rig.ctl_json({"stats"});
  CHECK(stats.at("states").at("succeeded").as_int64() == 2);
  CHECK(stats.at("total").as_int64() == 2);
  auto human = rig.ctl({"stats"});
  CHECK(human.out.find("succeeded  2") != std::string::npos);
  auto list = rig.ctl_json({"list", "--limit", "1"});
  CHECK(list.at("jobs").as_array().size() == 1);
  CHECK(list.contains("next_after_id"));
  auto missing = rig.ctl({"show", "999"});
  CHECK(missing.exit_code == 1);
  CHECK(missing.err.find("no job with id 999") != std::string::npos);
  auto bad = rig.ctl({"enqueue", "has space"});
  CHECK(bad.exit_code == 2);
  CHECK(rig.stop() == 0);
  CHECK_FALSE(std::filesystem::exists(rig.socket_path()));

  auto down = rig.ctl({"stats"});
  CHECK(down.exit_code == 69);
  CHECK(down.err.find("cannot reach kpsd at " + rig.socket_path()) != std::string::npos);
}

TEST_CASE("the control socket gets the configured mode") {
  Rig rig;
  rig.start();
  struct stat st {};
  REQUIRE(::stat(rig.socket_path().c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0660);
}

TEST_CASE("start-up failures: one clear line and a non-zero exit") {
  TempDir dir;
  auto run_kpsd = [&](const std::string& config) {
    std::string path = dir.write("bad.conf", config);
    return run_command({KPSD_BIN, "--config", path}, dir.path().string(), 30s);
  };
  auto lines = [](const std::string& s) { return std::count(s.begin(), s.end(), '\n'); };
  const std::string base = "[kps]\nendpoint = http://127.0.0.1:9\nproject_id = " + project +
                           "\n[auth]\ntoken_file = " + dir.file("token") +
                           "\n[control]\nsocket = " + dir.file("s.sock") + "\n";

  auto bad_key = run_kpsd(base + "[queue]\nconcurency = 4\n");
  CHECK(bad_key.exit_code == 78);
  CHECK(bad_key.err == "kpsd: " + dir.file("bad.conf") +
                           ":9: queue.concurency: unknown key (did you mean `concurrency`?)\n");

  auto no_token = run_kpsd(base + "[queue]\ndatabase = " + dir.file("j.db") + "\n");
  CHECK(no_token.exit_code == 78);
  CHECK(lines(no_token.err) == 1);
  CHECK(no_token.err.find("cannot read token file " + dir.file("token")) != std::string::npos);

  dir.write("token", "t\n");
  auto bad_db = run_kpsd(base + "[queue]\ndatabase = /proc/kpsd-no-such/jobs.db\n");
  CHECK(bad_db.exit_code == 73);
  CHECK(lines(bad_db.err) == 1);
  CHECK(bad_db.err.find("/proc/kpsd-no-such/jobs.db") != std::string::npos);

  // A socket path over sun_path's 107 bytes: refused by the check, not at bind() after it.
  std::string long_socket = dir.file(std::string(120, 's') + ".sock");
  std::string long_conf = base;
  long_conf.replace(long_conf.find(dir.file("s.sock")), dir.file("s.sock").size(), long_socket);
  auto too_long =
      run_command({KPSD_BIN, "--config", dir.write("long.conf", long_conf), "--check-config"},
                  dir.path().string(), 30s);
  CHECK(too_long.exit_code == 78);
  CHECK(too_long.err.find(
            "control.socket: `" + long_socket + "` is " + std::to_string(long_socket.size()) +
            " bytes long; a Unix socket path holds at most 107 bytes") != std::string::npos);

  auto missing_config =
      run_command({KPSD_BIN, "--config", dir.file("nope.conf")}, dir.path().string(), 30s);
  CHECK(missing_config.exit_code == 78);
  CHECK(missing_config.err == "kpsd: cannot read the configuration file " + dir.file("nope.conf") +
                                  ": No such file or directory\n");

  auto help = run_command({KPSD_BIN, "--help"}, dir.path().string(), 30s);
  CHECK(help.exit_code == 0);
  CHECK(help.out.find("--config") != std::string::npos);
  auto version = run_command({KPSCTL_BIN, "--version"}, dir.path().string(), 30s);
  CHECK(version.exit_code == 0);
  CHECK(version.out.find("kpsctl 0.1.0") != std::string::npos);
}

TEST_CASE("SIGTERM stops kpsd cleanly after the calls in flight") {
  Rig rig;
  rig.fake().set_behavior("srv-slow", fake::slow_answers(500ms));
  rig.start();
  CHECK(rig.ctl({"enqueue", "srv-slow"}).exit_code == 0);
  // Wait until the call is in flight, then stop.
  for (int i = 0; i < 200 && rig.fake().calls_for("srv-slow") == 0; ++i)
    std::this_thread::sleep_for(10ms);
  CHECK(rig.stop() == 0);
  auto rows = read_jobs(rig.db_path());
  CHECK(rows["srv-slow"].state != "running");  // its outcome was recorded before exit
  CHECK(rows["srv-slow"].attempt_rows == 1);
}
