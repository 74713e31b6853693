// kpsctl as operators type it (issue 22): the common mistakes and the exact first line each
// gets, one exit code for bad input, durations, --no-headers, -o wide, --watch, repeated lines,
// stats' fields, and wait's progress on a terminal.
#include "e2e_rig.hpp"

#include <boost/json.hpp>

#include <doctest/doctest.h>

#include <filesystem>
#include <regex>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace kpsd;
using namespace kpsd::test;
using namespace std::chrono_literals;

namespace {

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

const std::string commands =
    "enqueue, list, show, report, batches, stats, retry, cancel, pause, resume, reload, prune, "
    "wait, version";

struct Mistake {
  std::vector<std::string> args;
  int exit_code;
  std::string first_line;  // of stderr
};

}  // namespace

TEST_CASE("transcript: the common mistakes each get one kpsctl error line naming the value") {
  Rig rig;
  rig.start();
  std::string header = rig.dir().write("servers.csv", "\xEF\xBB\xBFserver_id\r\nsrv-1\r\n");
  std::string pub = rig.dir().write("id_ed25519.pub", "ssh-ed25519 AAAAC3Nza ops@host\n");
  std::string bad = rig.dir().write("ids", "srv-1\nsrv 2\n");
  std::string folder = rig.dir().file("a-folder");
  std::filesystem::create_directory(folder);
  std::string pem = rig.dir().write("id_rsa",
                                    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n"
                                    "-----END OPENSSH PRIVATE KEY-----\n");
  const std::vector<Mistake> mistakes{
      {{},
       2,
       "kpsctl: error: no command given; kpsctl needs one of: " + commands +
           " (kpsctl --help says what each does)"},
      {{"lsit"},
       2,
       "kpsctl: error: unknown command `lsit` (did you mean `list`?); the commands are: " +
           commands},
      {{"list", "--staet", "failed"},
       2,
       "kpsctl: error: list: unknown option `--staet` (did you mean `--state`?) (kpsctl list "
       "--help lists its options)"},
      {{"list", "--state", "faild"},
       2,
       "kpsctl: error: list: --state `faild` is not one of: queued, running, retrying, "
       "delivered, succeeded, failed, cancelled (did you mean `failed`?)"},
      {{"list", "--limit", "0"},
       2,
       "kpsctl: error: list: --limit `0` is not a whole number from 1 to 10000"},
      {{"list", "--state"}, 2, "kpsctl: error: list: --state needs a value"},
      {{"-o", "tabel", "list"},
       2,
       "kpsctl: error: list: --output `tabel` is not one of: table, wide, json, csv (did you "
       "mean `table`?)"},
      {{"retry", "night-run"},
       2,
       "kpsctl: error: retry: `night-run` is not a job id (a whole number above 0; a batch "
       "goes with --batch)"},
      {{"retry", "1998", "2001"}, 1, "kpsctl: error: no job with id 1998"},
      {{"retry", "--batch", "night-run"},
       1,
       "kpsctl: error: kpsd refused the request: no batch night-run"},
      {{"cancel"}, 2, "kpsctl: error: cancel: give JOB_ID... or --batch B"},
      {{"show", "1", "2"}, 2, "kpsctl: error: show: unexpected argument `2`"},
      {{"show", "999"}, 1, "kpsctl: error: kpsd refused the request: no job with id 999"},
      {{"wait", "--timeout", "5x"},
       2,
       "kpsctl: error: wait: --timeout `5x` is not a duration: a whole number and ms, s, m, h, "
       "d or w (90s, 5m, 1h30m, 7d); a bare number is seconds"},
      {{"prune", "--older-than", "30"},
       2,
       "kpsctl: error: prune: --older-than `30` is not a duration: a whole number and ms, s, m, "
       "h, d or w (90s, 5m, 1h30m, 7d)"},
      {{"prune", "--older-than", "30s"},
       2,
       "kpsctl: error: prune: --older-than `30s` is under an hour: jobs that ended that "
       "recently may still be wanted (a report, a retry); check with --dry-run, then add "
       "--force if you mean it"},
      {{"report", "-o", "table"},
       2,
       "kpsctl: error: report: -o table is not offered (csv, the default, or json)"},
      {{"stats", "--watch", "0.5s"},
       2,
       "kpsctl: error: stats: --watch `0.5s` is not a duration: a whole number and ms, s, m, h, "
       "d or w (90s, 5m, 1h30m, 7d); a bare number is seconds"},
      {{"enqueue"}, 2, "kpsctl: error: enqueue: give server ids or --file FILE"},
      {{"enqueue", "x", "--file", "f"},
       2,
       "kpsctl: error: enqueue: give server ids or --file FILE, not both"},
      {{"pause", "--batch", ""},
       2,
       "kpsctl: error: pause: --batch is empty: give a batch id or name"},
      {{"retry", "--state", "failed", "--batch", ""},
       2,
       "kpsctl: error: retry: --batch is empty: give a batch id or name"},
      {{"-o", "stats"},
       2,
       "kpsctl: error: `-o` took `stats` as its value and no command is left: give -o its value "
       "first (kpsctl -o VALUE stats)"},
      {{"--batch", "x", "stats"},
       2,
       "kpsctl: error: `--batch` is an option of a command: put it after the command (kpsctl "
       "stats --batch ...)"},
      {{"--jsn", "stats"},
       2,
       "kpsctl: error: unknown option `--jsn` (did you mean `--json`?) (kpsctl --help lists "
       "them)"},
      {{"enqueue", "--file", header},
       2,
       "kpsctl: error: " + header +
           ":1: `server_id`: the first line looks like a CSV header, not a server; skip it "
           "with `tail -n +2 FILE | kpsctl enqueue --file -`"},
      {{"enqueue", "--file", bad},
       2,
       "kpsctl: error: " + bad +
           ":2: `srv 2`: server_id may only hold letters, digits, '-', "
           "'_' and '.'"},
      {{"enqueue", "--auth-type", "keypair", "--key-file", pub, "srv-1"},
       2,
       "kpsctl: error: key file " + pub +
           " holds a public key (an id_*.pub file): give the private key file it pairs with"},
      {{"enqueue", "--max-failures", "5x", "srv-1"},
       2,
       "kpsctl: error: enqueue: --max-failures `5x`: give a count of failed jobs (10), a "
       "percentage (5%), or 0 for none"},
  };
  for (const auto& m : mistakes) {
    std::string typed = "kpsctl";
    for (const auto& a : m.args) typed += " " + a;
    CAPTURE(typed);
    auto r = rig.ctl(m.args);
    CHECK(r.exit_code == m.exit_code);
    CHECK(first_line(r.err) == m.first_line);
    CHECK(r.out.empty());
  }
  // Nothing of that reached kpsd as a job.
  CHECK(rig.ctl_json({"stats"}).at("total").as_int64() == 0);
  // Under --json a parse error is a document on stdout, with the same words and exit code.
  auto as_json = rig.ctl({"--json", "list", "--staet", "failed"});
  CHECK(as_json.exit_code == 2);
  auto doc = boost::json::parse(as_json.out).as_object();
  CHECK(doc.at("exit_code").as_int64() == 2);
  CHECK(doc.at("error").as_string().starts_with("list: unknown option `--staet`"));
  // A socket path that is wrong is not a restart to wait out: wait says so at once.
  auto nowhere =
      run_command({KPSCTL_BIN, "--socket", rig.dir().file("nowhere.sock"), "wait", "--batch", "x"},
                  rig.dir().path().string(), 30s);
  CHECK(nowhere.exit_code == 69);
  CHECK(first_line(nowhere.err) == "kpsctl: error: wait: cannot reach kpsd at " +
                                       rig.dir().file("nowhere.sock") +
                                       ": No such file or directory (is kpsd running? set "
                                       "--socket or KPSD_SOCKET)");
  // --help still works without a command, and says what the exit codes mean.
  auto help = rig.ctl({"--help"});
  CHECK(help.exit_code == 0);
  CHECK(help.out.find("2 bad input (an") != std::string::npos);
  CHECK(rig.stop() == 0);
}

TEST_CASE("durations in and out - wait --timeout 5m - stats prints 1h02m not seconds") {
  Rig rig({.fake = {.task_duration = 20ms}});
  rig.start();
  rig.ctl({"pause"});
  REQUIRE(rig.ctl({"enqueue", "old-1", "old-2"}).exit_code == 0);
  // A job queued 1 h 2 min ago, as the store would hold it after an outage.
  auto old = std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::system_clock::now().time_since_epoch())
                 .count() -
             (3600 + 120) * 1000;
  auto sql =
      run_command({"/usr/bin/sqlite3", "-cmd", ".timeout 5000", rig.db_path(),
                   "UPDATE jobs SET next_attempt_at = " + std::to_string(old) +
                       ", created_at = " + std::to_string(old) + " WHERE server_id = 'old-1'"},
                  rig.dir().path().string(), 30s);
  REQUIRE_MESSAGE(sql.exit_code == 0, sql.err);
  auto stats = rig.ctl({"stats"});
  CHECK_MESSAGE(std::regex_search(stats.out, std::regex("oldest queued  1h0[23]m\n")), stats.out);
  rig.ctl({"resume"});
  auto wait = rig.ctl({"wait", "--timeout", "5m"});
  CHECK_MESSAGE(wait.exit_code == 0, wait.err);
  CHECK(rig.ctl({"wait", "--timeout", "1h30m"}).exit_code == 0);
  CHECK(rig.ctl({"wait", "--timeout", "60"}).exit_code == 0);  // a bare number: seconds
  CHECK(rig.stop() == 0);
}

TEST_CASE("tables: --no-headers - -o wide - list and batches - empty results on stderr") {
  Rig rig({.fake = {.task_duration = 20ms}});
  rig.start();
  auto none = rig.ctl({"list"});
  CHECK(none.out.empty());
  CHECK(none.err == "No jobs match.\n");
  auto no_batches = rig.ctl({"batches"});
  CHECK(no_batches.out.empty());
  CHECK(no_batches.err == "No batches yet.\n");
  auto enq = rig.ctl({"enqueue", "--batch", "wide-one", "--canary", "1", "--max-failures", "5%",
                      "w-1", "w-2", "w-3"});
  REQUIRE(enq.exit_code == 0);
  // A wait on a held batch says why it does not end, once, and again when it times out.
  auto held = rig.ctl({"wait", "--batch", "wide-one", "--timeout", "2s"});
  CHECK(held.exit_code == 1);
  std::string why = "batch 1 is paused (canary): its held jobs wait for kpsctl resume --batch 1";
  CHECK(held.err == "kpsctl: warning: wait: " + why +
                        "\nkpsctl: error: wait: timed out with jobs unfinished (" + why + ")\n");
  // A global resume names the batches that stay paused.
  CHECK(rig.ctl({"resume"}).out ==
        "resumed\nbatch 1 (wide-one) is still paused (canary): kpsctl resume --batch 1\n");
  auto stats = rig.ctl({"stats"});
  CHECK(stats.out.find("PAUSED (canary): canary done: its first job ended (1 succeeded, 0 "
                       "failed); the others wait for kpsctl resume --batch 1\n") !=
        std::string::npos);

  auto plain = rig.ctl({"list"});
  CHECK(plain.out.starts_with("ID       STATE      TRY  SERVER"));
  auto rows = rig.ctl({"list", "--no-headers"});
  CHECK(std::regex_search(rows.out, std::regex("^[0-9]+ +succeeded +1 +w-1 ")));
  CHECK(std::count(rows.out.begin(), rows.out.end(), '\n') == 3);
  auto wide = rig.ctl({"list", "-o", "wide"});
  CHECK(wide.out.starts_with("ID       STATE      TRY  SERVER"));
  CHECK(wide.out.find("TASK_ID") != std::string::npos);
  CHECK(wide.out.find("NEXT_ATTEMPT") != std::string::npos);
  CAPTURE(wide.out);
  CHECK(std::regex_search(
      wide.out, std::regex("\n[0-9]+ +succeeded +1 +w-1 +fake-task-[0-9]+ +SUCCESS_UNBIND +- ")));
  CHECK(std::regex_search(wide.out,
                          std::regex("\n[0-9]+ +queued +0 +w-2 +- +- +held \\(batch paused\\) ")));
  auto csv = rig.ctl({"list", "-o", "csv", "--no-headers"});
  CHECK(csv.out.starts_with(std::to_string(1) + ",w-1,succeeded,"));

  auto batches = rig.ctl({"batches", "-o", "wide"});
  CHECK(batches.out.find("CANARY  MAX_FAILURES  WHY") != std::string::npos);
  CHECK_MESSAGE(
      std::regex_search(batches.out, std::regex("wide-one .* canary +1 +5% +canary done: ")),
      batches.out);
  auto batches_csv = rig.ctl({"batches", "-o", "csv", "--no-headers"});
  CHECK(std::regex_search(batches_csv.out,
                          std::regex("^1,wide-one,[0-9T:-]+Z,3,2,1,0,0,canary,[0-9T:-]+Z,")));
  CHECK(rig.stop() == 0);
}

TEST_CASE("--watch prints stats again every interval until interrupted") {
  Rig rig;
  rig.start();
  std::string out = rig.dir().file("watch.out"), err = rig.dir().file("watch.err");
  Process watch(
      {KPSCTL_BIN, "--socket", rig.socket_path(), "stats", "-o", "csv", "--watch", "200ms"}, out,
      err);
  std::this_thread::sleep_for(700ms);
  REQUIRE(rig.ctl({"enqueue", "late-1"}).exit_code == 0);
  std::this_thread::sleep_for(900ms);
  watch.signal(SIGINT);
  REQUIRE(watch.wait(5s).has_value());
  std::string text = slurp(out);
  CAPTURE(text);
  // A row each 200 ms under one header line: a CSV file, no blank lines.
  std::regex row("[0-9]+,[0-9]+,[0-9]+,[0-9]+,[0-9]+,[0-9]+,[0-9]+,[0-9T:-]+Z,[0-9]+,");
  auto n = std::distance(std::sregex_iterator(text.begin(), text.end(), row), {});
  CHECK(n >= 5);
  CHECK(n <= 12);
  CHECK(text.starts_with("queued,running,"));
  CHECK(text.find("queued,running", 1) == std::string::npos);  // the header once
  CHECK(text.find("\n\n") == std::string::npos);
  // The job queued midway shows in the later rows.
  std::string first_row = text.substr(text.find('\n') + 1);
  CHECK(first_row.substr(0, first_row.find('\n')).ends_with(",0,1,0"));
  CHECK(std::regex_search(text, std::regex("[0-9]+Z,1,")));
  // A table watch has a blank line between turns.
  std::string out2 = rig.dir().file("watch2.out");
  Process table({KPSCTL_BIN, "--socket", rig.socket_path(), "batches", "--watch", "0"}, out2, err);
  std::this_thread::sleep_for(500ms);
  table.signal(SIGINT);
  REQUIRE(table.wait(5s).has_value());
  CHECK(slurp(err).find("under 100ms") != std::string::npos);
  CHECK(rig.stop() == 0);
}

TEST_CASE("repeated servers: --dry-run and the summary name them - each is queued once") {
  Rig rig({.fake = {.task_duration = 20ms}});
  rig.start();
  std::string file =
      rig.dir().write("ids", "r-1\nr-2\nr-1\n{\"server_id\":\"r-2\",\"port\":2222}\nr-3\n");
  auto dry = rig.ctl({"enqueue", "--file", file, "--dry-run"});
  CHECK(dry.exit_code == 0);
  CHECK(dry.out == file +
                       ": 3 jobs from 5 lines, every line valid; 2 repeat an earlier server "
                       "(each server is queued once) (dry run: nothing queued)\n");
  CHECK(dry.err == "kpsctl: warning: " + file + ":3: `r-1` repeats line 1 (queued once)\n" +
                       "kpsctl: warning: " + file + ":4: `r-2` repeats line 2 (queued once)\n");
  auto dry_json = rig.ctl_json({"enqueue", "--file", file, "--dry-run"});
  CHECK(dry_json.at("repeated").as_int64() == 2);
  CHECK(dry_json.at("jobs").as_int64() == 3);
  CHECK(dry_json.at("lines").as_int64() == 5);
  CHECK(dry_json.at("repeated_lines").as_array()[1].at("first_line").as_int64() == 2);

  auto real = rig.ctl({"enqueue", "--file", file});
  CHECK(real.exit_code == 0);
  CHECK(real.err.find("enqueued 3 jobs (3 new, 0 already queued); 2 repeated lines added none;") !=
        std::string::npos);
  CHECK(rig.ctl_json({"stats"}).at("total").as_int64() == 3);
  auto args = rig.ctl({"enqueue", "--dry-run", "a-1", "a-2", "a-1"});
  CHECK(args.err == "kpsctl: warning: argument 3: `a-1` repeats argument 1 (queued once)\n");
  CHECK(args.out ==
        "arguments: 2 jobs from 3 ids, every id valid; 1 repeats an earlier server "
        "(each server is queued once) (dry run: nothing queued)\n");
  CHECK(rig.stop() == 0);
}

TEST_CASE("wait on a terminal shows progress and names the failed jobs") {
  if (::access("/usr/bin/script", X_OK) != 0) {
    MESSAGE("SKIPPED: script (util-linux) is not installed to give kpsctl a terminal");
    return;
  }
  Rig rig({.fake = {.task_duration = 300ms}});
  rig.fake().set_behavior("p-bad", fake::error_answers(400, -1, "KPS.4016"));
  rig.start();
  std::vector<std::string> args{"enqueue", "--batch", "prog", "p-bad"};
  for (int i = 1; i <= 20; ++i) args.push_back("p-" + std::to_string(i));
  REQUIRE(rig.ctl(args).exit_code == 0);
  // script(1) gives kpsctl a terminal: the progress line is redrawn there, the counts follow.
  std::string command = std::string(KPSCTL_BIN) + " --socket " + rig.socket_path() +
                        " wait --batch prog --timeout 60";
  auto r = run_command({"/usr/bin/script", "-qec", command, "/dev/null"}, rig.dir().path().string(),
                       90s);
  CAPTURE(r.out);
  CHECK(r.exit_code == 1);  // p-bad failed
  CHECK(std::regex_search(
      r.out,
      std::regex(
          "\r\x1b\\[Kwaiting: [0-9]+/21 ended \\([01] failed, 0 cancelled\\), [0-9]+ running")));
  CHECK(r.out.find("succeeded  20") != std::string::npos);
  CHECK(r.out.find("job ") != std::string::npos);
  CHECK(std::regex_search(r.out, std::regex("  job [0-9]+ \\(p-bad\\): KPS.4016")));
  // Without a terminal: no progress line.
  auto plain = rig.ctl({"wait", "--batch", "prog"});
  CHECK(plain.err.find("waiting:") == std::string::npos);
  CHECK(rig.stop() == 0);
}
