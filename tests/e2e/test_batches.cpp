// Batches (issue 11, item 4): every enqueue is a batch; list, stats, wait and report take
// --batch; a file is checked whole before anything is queued; a bare wait follows only what is
// unfinished when it starts, across a kpsd restart; prune and retention delete finished jobs.
#include "e2e_rig.hpp"
#include "process.hpp"

#include <boost/json.hpp>

#include <doctest/doctest.h>

#include <regex>
#include <thread>

using namespace kpsd;
using namespace kpsd::test;
using namespace std::chrono_literals;
namespace json = boost::json;

TEST_CASE("enqueue --file checks every line first: a bad line 4501 queues nothing") {
  Rig rig;
  rig.start();
  std::string ids;
  for (int i = 1; i <= 5000; ++i) {
    ids += (i == 4501 ? std::string("bad id!") : "srv-" + std::to_string(i)) + "\n";
  }
  ids +=
      "{\"server_id\": \"k-1\", \"auth\": {\"type\": \"password\", \"key_file\": "
      "\"/nonexistent/pw\"}}\n";
  std::string file = rig.dir().write("ids", ids);
  auto r = rig.ctl({"enqueue", "--file", file});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find(file + ":4501: ") != std::string::npos);
  CHECK(r.err.find(file + ":5001: cannot read key file /nonexistent/pw") != std::string::npos);
  CHECK(r.err.find("2 bad lines; nothing queued") != std::string::npos);
  CHECK(r.out.empty());
  CHECK(rig.ctl_json({"stats"}).at("total").as_int64() == 0);
  CHECK(rig.fake().disassociate_calls() == 0);

  // The same errors as one JSON document.
  auto as_json = rig.ctl({"--json", "enqueue", "--file", file});
  CHECK(as_json.exit_code == 2);
  auto doc = json::parse(as_json.out).as_object();
  CHECK(doc.at("ok").as_bool() == false);
  CHECK(doc.at("bad_line_count").as_int64() == 2);
  CHECK(doc.at("bad_lines").as_array()[0].at("line").as_int64() == 4501);

  // --dry-run on a good file checks and stops.
  std::string good = rig.dir().write("good", "g-1\ng-2\n# comment\ng-3\n");
  auto dry = rig.ctl({"enqueue", "--file", good, "--dry-run"});
  CHECK(dry.exit_code == 0);
  CHECK(dry.out.find("3 jobs, every line valid (dry run: nothing queued)") != std::string::npos);
  CHECK(rig.ctl_json({"stats"}).at("total").as_int64() == 0);

  // A UTF-8 byte order mark is not part of the first id; a header row is named, with the fix.
  std::string bom = rig.dir().write("bom",
                                    "\xEF\xBB\xBF"
                                    "bom-1\nbom-2\n");
  auto with_bom = rig.ctl({"enqueue", "--file", bom, "--dry-run"});
  CHECK(with_bom.exit_code == 0);
  CHECK(with_bom.out.find("2 jobs, every line valid") != std::string::npos);
  for (const char* header : {"server_id\nsrv-a\n", "\xEF\xBB\xBFServer_ID\r\nsrv-a\r\n"}) {
    CAPTURE(header);
    auto r2 = rig.ctl({"enqueue", "--file", rig.dir().write("csv", header)});
    CHECK(r2.exit_code == 2);
    CHECK(r2.err.find(":1: `") != std::string::npos);
    CHECK(r2.err.find("`: the first line looks like a CSV header, not a server; skip it with "
                      "`tail -n +2 FILE | kpsctl enqueue --file -`") != std::string::npos);
  }
  // A CSV with a header: both fixes. A CSV without one: its rows are named, not called a header.
  for (const char* csv : {"server_id,name\nsrv-a,web\n", "Server Name,IP\nsrv-a,10.0.0.1\n"}) {
    CAPTURE(csv);
    auto r2 = rig.ctl({"enqueue", "--file", rig.dir().write("csv", csv)});
    CHECK(r2.exit_code == 2);
    CHECK(r2.err.find("`: the first line looks like a CSV header, not a server; skip it with "
                      "`tail -n +2 FILE | cut -d, -f1 | kpsctl enqueue --file -`") !=
          std::string::npos);
  }
  auto rows = rig.ctl({"enqueue", "--file", rig.dir().write("rows", "srv-a,web\nsrv-b,db\n")});
  CHECK(rows.exit_code == 2);
  CHECK(rows.err.find(":1: `srv-a,web`: a CSV row, not one server id: take its first column with "
                      "`cut -d, -f1 FILE | kpsctl enqueue --file -`") != std::string::npos);
  CHECK(rows.err.find("the first line looks like a CSV header") == std::string::npos);
  auto control = rig.ctl({"enqueue", "--file", rig.dir().write("ctl", "ok-1\nbad\x01id\n")});
  CHECK(control.err.find(":2: `bad\\x01id`: server_id may only hold") != std::string::npos);
  CHECK(rig.ctl_json({"stats"}).at("total").as_int64() == 0);
  CHECK(rig.stop() == 0);
}

TEST_CASE("a named batch: list - stats - wait - report and batches take it") {
  Rig rig({.fake = {.task_duration = 20ms}});
  rig.fake().set_behavior("b-bad", fake::error_answers(400, -1, "KPS.4016"));
  rig.start();
  auto first = rig.ctl({"enqueue", "--batch", "night run", "b-1", "b-2", "b-bad"});
  REQUIRE_MESSAGE(first.exit_code == 0, first.err);
  CHECK(std::regex_search(first.err, std::regex("^batch 1 \\(night run\\): enqueued 3 jobs")));
  // A taken name is bad input (2), found before anything is read or sent; --dry-run finds it too.
  auto taken = rig.ctl({"enqueue", "--batch", "night run", "b-4"});
  CHECK(taken.exit_code == 2);
  CHECK(taken.err ==
        "kpsctl: error: enqueue: --batch `night run` is taken (batch 1); choose another name\n");
  auto taken_dry = rig.ctl({"enqueue", "--batch", "night run", "--dry-run", "b-4"});
  CHECK(taken_dry.exit_code == 2);
  CHECK(taken_dry.err == taken.err);
  CHECK(rig.ctl({"enqueue", "--batch", "42", "b-4"}).exit_code == 2);  // names are not numbers
  auto second = rig.ctl({"--json", "enqueue", "b-2", "b-5"});          // b-2 is in both batches
  REQUIRE(second.exit_code == 0);
  CHECK(Rig::batch_of(second) == "2");  // the refused enqueue made no batch

  CHECK(rig.ctl({"wait", "--batch", "night run", "--timeout", "60"}).exit_code == 1);
  CHECK(rig.ctl({"wait", "--batch", Rig::batch_of(second), "--timeout", "60"}).exit_code == 0);
  CHECK(rig.ctl({"wait", "--batch", "no such batch"}).exit_code == 1);

  auto stats = rig.ctl_json({"stats", "--batch", "night run"});
  CHECK(stats.at("states").at("succeeded").as_int64() == 2);
  CHECK(stats.at("states").at("failed").as_int64() == 1);
  CHECK(stats.at("total").as_int64() == 3);
  CHECK(stats.at("batch").at("name").as_string() == "night run");
  CHECK(rig.ctl_json({"stats", "--batch", Rig::batch_of(second)}).at("total").as_int64() == 2);

  auto listed = rig.ctl_json({"list", "--batch", "night run"}).at("jobs").as_array();
  CHECK(listed.size() == 3);
  auto csv = rig.ctl({"--output", "csv", "list", "--batch", Rig::batch_of(second)});
  CHECK(csv.out.starts_with("id,server_id,state,attempts,task_id,task_status,reason,"));
  CHECK(std::count(csv.out.begin(), csv.out.end(), '\n') == 3);

  auto report = rig.ctl({"report", "--batch", "night run"});
  REQUIRE(report.exit_code == 0);
  CHECK(std::regex_search(report.out,
                          std::regex("\n[0-9]+,b-bad,failed,1,,,KPS.4016 fake error 400[^\n]*\n")));
  CHECK(
      std::regex_search(report.out, std::regex("\n[0-9]+,b-1,succeeded,1,[^,]+,SUCCESS_UNBIND,,")));
  auto report_json = json::parse(rig.ctl({"--json", "report", "--batch", "1"}).out).as_object();
  CHECK(report_json.at("jobs").as_array().size() == 3);

  auto batches = rig.ctl({"batches"});
  CHECK(batches.out.find("night run") != std::string::npos);
  auto batches_json = rig.ctl_json({"batches"}).at("batches").as_array();
  REQUIRE(batches_json.size() == 2);
  CHECK(batches_json[1].at("states").at("failed").as_int64() == 1);
  CHECK(rig.stop() == 0);
}

TEST_CASE("a bare wait follows the jobs unfinished when it starts - old failures do not count") {
  Rig rig({.fake = {.task_duration = 1500ms}});
  rig.fake().set_behavior("old-bad", fake::error_answers(400, -1, "KPS.4016"));
  rig.start();
  auto old = rig.ctl({"enqueue", "old-bad"});
  auto failed = rig.ctl({"wait", "--batch", Rig::batch_of(old), "--timeout", "60"});
  CHECK(failed.exit_code == 1);
  // The failed jobs are named, with their reason, on stderr.
  CHECK(std::regex_search(failed.err,
                          std::regex("^failed:\n  job [0-9]+ \\(old-bad\\): .*KPS\\.4016")));

  REQUIRE(rig.ctl({"enqueue", "w-1", "w-2", "w-3"}).exit_code == 0);
  // kpsd stops and starts again while the wait is waiting; it reconnects and goes on.
  Process wait({KPSCTL_BIN, "--socket", rig.socket_path(), "wait", "--timeout", "120"},
               rig.dir().file("wait.out"), rig.dir().file("wait.err"));
  std::this_thread::sleep_for(300ms);
  CHECK(rig.stop() == 0);
  std::this_thread::sleep_for(1500ms);
  CHECK_FALSE(wait.wait(0ms).has_value());  // still waiting while kpsd is away
  rig.start();
  auto code = wait.wait(60s);
  std::string err = test::TempDir::slurp_file(rig.dir().file("wait.err"));
  CAPTURE(err);
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  CHECK(err.find("waiting for kpsd to come back") != std::string::npos);
  CHECK(err.find("kpsd is back") != std::string::npos);
  std::string out = test::TempDir::slurp_file(rig.dir().file("wait.out"));
  CHECK(out.find("succeeded  3") != std::string::npos);
  CHECK(out.find("failed     0") != std::string::npos);
  CHECK(rig.stop() == 0);
}

TEST_CASE("prune deletes finished jobs by age and says how many") {
  Rig rig;
  rig.skip_calls_check("prune deletes jobs with their attempt rows");
  rig.fake().set_behavior("p-bad", fake::error_answers(400, -1, "KPS.4016"));
  rig.start();
  auto enq = rig.ctl({"enqueue", "p-1", "p-2", "p-bad"});
  REQUIRE(enq.exit_code == 0);
  rig.ctl({"wait", "--batch", Rig::batch_of(enq), "--timeout", "60"});
  CHECK(rig.ctl({"prune", "--older-than", "7d"}).out.find("pruned 0 ") != std::string::npos);
  auto bad = rig.ctl({"prune", "--older-than", "7 days"});
  CHECK(bad.exit_code == 2);
  CHECK(bad.err.find("`7 days` is not a duration") != std::string::npos);
  CHECK(rig.ctl({"pause"}).exit_code == 0);
  REQUIRE(rig.ctl({"enqueue", "p-queued"}).exit_code == 0);  // unfinished: never pruned
  // Under an hour needs --force: 30s is one keystroke from 30d.
  auto young = rig.ctl({"prune", "--older-than", "0s"});
  CHECK(young.exit_code == 2);
  CHECK(young.err.find("prune: --older-than `0s` is under an hour") != std::string::npos);
  CHECK(rig.ctl_json({"stats"}).at("total").as_int64() == 4);
  // --dry-run counts per batch and state, and deletes nothing.
  std::string batch = Rig::batch_of(enq);
  auto preview = rig.ctl({"prune", "--older-than", "0s", "--dry-run"});
  CHECK(preview.exit_code == 0);
  CHECK(preview.out == "BATCH    STATE            JOBS\n" + batch +
                           std::string(8 - batch.size(), ' ') + " succeeded           2\n" + batch +
                           std::string(8 - batch.size(), ' ') +
                           " failed              1\nwould prune 3 finished jobs (and their "
                           "attempts) that ended before " +
                           preview.out.substr(preview.out.find("ended before ") + 13));
  CHECK(preview.out.find("; nothing deleted (--dry-run)\n") != std::string::npos);
  CHECK(rig.ctl_json({"stats"}).at("total").as_int64() == 4);
  // --state and --batch narrow it.
  auto failed_only = rig.ctl_json({"prune", "--older-than", "0s", "--force", "--state", "failed"});
  CHECK(failed_only.at("pruned").as_int64() == 1);
  CHECK(rig.ctl_json({"prune", "--older-than", "0s", "--force", "--batch", "424242"})
            .at("ok")
            .as_bool() == false);
  auto pruned = rig.ctl_json({"prune", "--older-than", "0s", "--force", "--batch", batch});
  CHECK(pruned.at("pruned").as_int64() == 2);
  auto stats = rig.ctl_json({"stats"});
  CHECK(stats.at("total").as_int64() == 1);
  CHECK(stats.at("states").at("queued").as_int64() == 1);
  CHECK(read_jobs(rig.db_path()).size() == 1);
  CHECK(rig.log().find("prune finished jobs older than 0 s") != std::string::npos);
  CHECK(rig.stop() == 0);
}

TEST_CASE("kpsctl version - JSON errors - integers as integers - csv") {
  Rig rig;
  rig.start();
  auto version = rig.ctl({"version"});
  CHECK(version.exit_code == 0);
  CHECK(std::regex_search(
      version.out,
      std::regex("^kpsctl [0-9.]+\nkpsd   [0-9.]+ \\(database schema [0-9]+, pid [0-9]+\\)\n")));
  auto v = rig.ctl_json({"version"});
  CHECK(v.at("kpsd").at("schema_version").as_int64() >= 6);

  auto missing = rig.ctl({"--json", "show", "999"});
  CHECK(missing.exit_code == 1);
  auto err = json::parse(missing.out).as_object();
  CHECK(err.at("ok").as_bool() == false);
  CHECK(err.at("error").as_string() == "kpsd refused the request: no job with id 999");
  CHECK(missing.err.empty());
  auto usage = rig.ctl({"--output", "json", "list", "--limit", "0"});
  CHECK(usage.exit_code == 2);
  CHECK(json::parse(usage.out).at("exit_code").as_int64() == 2);

  auto stats = rig.ctl({"--json", "stats"});
  CHECK(stats.out.find("E") == std::string::npos);  // no 1.32E1 or 0E0
  CHECK(stats.out.find("\"rate_per_second\":0,") != std::string::npos);

  // CSV: one header and one row with every field, BLOCKED and the store included.
  auto csv = rig.ctl({"-o", "csv", "stats"}).out;
  CHECK(
      csv.starts_with("queued,running,retrying,delivered,succeeded,failed,cancelled,at,total,"
                      "in_flight,calls_started_per_second,pace_per_second,"
                      "configured_rate_per_second,throttled_share,oldest_queued_ms,paused,"
                      "paused_batches,blocked,blocked_reason,blocked_for_ms,quota_holding,"
                      "store_writable,outcomes_waiting\n0,0,0,0,0,0,0,20"));
  CHECK(std::regex_search(csv,
                          std::regex("\n0,0,0,0,0,0,0,[0-9T:-]+Z,0,0,0,0,0,0,,0,,0,,,0,1,0\n$")));
  CHECK(rig.ctl({"-o", "csv", "show", "1"}).exit_code == 2);
  CHECK(rig.stop() == 0);

  auto away = rig.ctl({"version"});
  CHECK(away.exit_code == 69);
  CHECK(away.out.starts_with("kpsctl "));
}
