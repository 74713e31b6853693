// End to end: every kpsctl command in both output modes (enqueue, list, show, stats, wait,
// retry, cancel, pause, resume), what it says when something is wrong, and one unfinished job
// per server.
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
  Rig rig({.fake = {.task_duration = 20ms}});
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
  Rig rig({.fake = {.task_duration = 20ms}});
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
  Rig rig({.fake = {.task_duration = 20ms}});
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
  Rig rig({.fake = {.task_duration = 20ms}});
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
