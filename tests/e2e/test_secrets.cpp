// End to end: no secret leaks and no outside text forges anything: job keys in no log, output or
// database file, nor in kpsd's memory once their jobs end; log and audit lines that cannot be
// forged; the prune guard; DNS rebinding refused; loose modes warned; no core file.
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

TEST_CASE("job secrets are found nowhere: not in the log - kpsctl output - or the database files") {
  const std::string password = "Pa55w0rd-unique-7f3a9c";
  const std::string key_marker = "KEYMATERIAL9b1e77";
  Rig rig({.fake = {.task_duration = 20ms}, .config = {{"log.level", "trace"}}});
  rig.fake().set_behavior("sec-pw-bad", fake::error_answers(400, -1, "KPS.4016"));
  rig.fake().set_behavior("sec-key-bad", fake::error_answers(403, -1, "KPS.6009"));
  rig.fake().set_behavior("sec-pw-flaky", fake::failed_deliveries(1));
  std::string pw_file = rig.dir().write("pw", password + "\n");
  std::string key_file =
      rig.dir().write("id_rsa", "-----BEGIN RSA PRIVATE KEY-----\n" + key_marker +
                                    "\n-----END RSA PRIVATE KEY-----\n");
  std::string ndjson;
  for (std::string id : {"sec-pw-ok", "sec-pw-bad", "sec-pw-flaky"}) {
    ndjson += "{\"server_id\": \"" + id +
              "\", \"auth\": {\"type\": \"password\", \"key_file\": \"" + pw_file + "\"}}\n";
  }
  for (std::string id : {"sec-key-ok", "sec-key-bad"}) {
    ndjson += "{\"server_id\": \"" + id + "\", \"auth\": {\"type\": \"keypair\", \"key_file\": \"" +
              key_file + "\"}}\n";
  }
  rig.start();
  std::string outputs;
  auto run = [&](std::vector<std::string> args) {
    auto r = rig.ctl(args);
    outputs += r.out + r.err;
    return r;
  };
  REQUIRE(run({"--json", "enqueue", "--file", rig.dir().write("jobs.ndjson", ndjson)}).exit_code ==
          0);
  REQUIRE(run({"enqueue", "--auth-type", "password", "--key-file", pw_file, "sec-cli"}).exit_code ==
          0);
  // Two fail permanently by design.
  CHECK(run({"wait", "1", "2", "3", "4", "5", "6", "--timeout", "60"}).exit_code == 1);
  for (int id = 1; id <= 6; ++id) {
    run({"show", std::to_string(id)});
    run({"--json", "show", std::to_string(id)});
  }
  run({"--json", "list"});
  run({"list"});
  auto rows = read_jobs(rig.db_path());
  CHECK(rows["sec-pw-ok"].state == "succeeded");
  CHECK(rows["sec-pw-flaky"].state == "succeeded");
  CHECK(rows["sec-key-ok"].state == "succeeded");
  CHECK(rows["sec-pw-bad"].state == "failed");
  CHECK(rows["sec-key-bad"].state == "failed");
  CHECK(outputs.find("password (redacted)") != std::string::npos);

  auto check_files = [&](const char* when) {
    CAPTURE(when);
    CHECK(rig.log().find(password) == std::string::npos);
    CHECK(rig.log().find(key_marker) == std::string::npos);
    CHECK(outputs.find(password) == std::string::npos);
    CHECK(outputs.find(key_marker) == std::string::npos);
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
      std::string path = rig.db_path() + suffix;
      if (!std::filesystem::exists(path)) continue;
      std::string raw = slurp(path);
      CAPTURE(path);
      CHECK(raw.find(password) == std::string::npos);
      CHECK(raw.find(key_marker) == std::string::npos);
    }
  };
  check_files("while kpsd runs");
  for (const char* suffix : {"", "-wal", "-shm"}) {
    struct stat st {};
    std::string path = rig.db_path() + suffix;
    if (::stat(path.c_str(), &st) != 0) continue;
    CAPTURE(path);
    CHECK((st.st_mode & 0777) == 0600);  // database, WAL and shared-memory files are private
  }
  CHECK(rig.stop() == 0);
  check_files("after kpsd stopped");
}

TEST_CASE("a hostile endpoint's text forges no log record - no terminal escape - no formula") {
  // Issue 31 items 2, 3 and 8: an error code with CR/LF and "<0>" made records of any
  // priority; kpsctl printed ESC sequences raw; report wrote =formulas as they were.
  Rig rig;
  rig.fake().set_behavior("hostile-1",
                          fake::error_answers(400, -1, "KPS.4016\n<0>emerg: FORGED record\x1b[2J"));
  rig.fake().set_behavior("hostile-2",
                          fake::error_answers(403, -1, "=cmd|' /C calc'!A0\x1b]52;c;ZXZpbA==\x07"));
  // A bidi override and a C1 CSI (a terminal's ESC [ in one character).
  rig.fake().set_behavior("hostile-3", fake::error_answers(404, -1,
                                                           "KPS\xe2\x80\xae"
                                                           "9003\xc2\x9b"
                                                           "2J"));
  rig.start();
  auto enq = rig.ctl({"enqueue", "--batch", "hostile", "hostile-1", "hostile-2", "hostile-3"});
  REQUIRE(enq.exit_code == 0);
  CHECK(rig.ctl({"wait", "--batch", "hostile", "--timeout", "30"}).exit_code == 1);
  std::string log = rig.log();
  CHECK(log.find("\n<0>emerg: FORGED") == std::string::npos);  // no record of its own
  CHECK(log.find("KPS.4016\\x0a<0>emerg: FORGED record\\x1b[2J") != std::string::npos);
  CHECK(log.find('\x1b') == std::string::npos);
  auto rows = read_jobs(rig.db_path());
  std::string id = std::to_string(rows.at("hostile-1").id);
  // Every output form of every command that shows API or database text.
  for (std::vector<std::string> args : {std::vector<std::string>{"list"},
                                        {"list", "-o", "wide"},
                                        {"show", id},
                                        {"--output", "csv", "report", "--batch", "hostile"},
                                        {"--output", "csv", "list"},
                                        {"batches"},
                                        {"wait", "--batch", "hostile", "--timeout", "5"}}) {
    auto r = rig.ctl(args);
    CAPTURE(args[0]);
    CHECK(r.out.find('\x1b') == std::string::npos);
    CHECK(r.err.find('\x1b') == std::string::npos);
    CHECK(r.out.find("\n<0>emerg") == std::string::npos);
  }
  auto report = rig.ctl({"--output", "csv", "report", "--batch", "hostile"});
  CHECK(report.out.find(",=cmd") == std::string::npos);
  CHECK(report.out.find("'=cmd|' /C calc'!A0\\x1b]52;c;ZXZpbA==\\x07") != std::string::npos);
}

TEST_CASE("audit lines cannot be forged through the socket: a batch name is checked on every op") {
  // Issue 31 item 4: cancel/pause/resume/retry/prune logged the raw batch name first.
  Rig rig;
  rig.start();
  UnixClient client(rig.socket_path());
  for (std::string op : {"cancel", "pause", "resume", "retry", "prune"}) {
    std::string extra = op == "prune" ? R"(,"older_than_ms":7200000)" : "";
    auto reply = client.request(
        R"({"op":")" + op + R"(","batch":"n\n<2>crit: FORGED audit: uid 0 (root): cancel job 1")" +
        extra + "}");
    REQUIRE(reply);
    CAPTURE(*reply);
    CHECK(reply->find("control character") != std::string::npos);
  }
  CHECK(rig.log().find("\n<2>crit: FORGED") == std::string::npos);
  CHECK(rig.log().find("FORGED audit") == std::string::npos);
}

TEST_CASE("kpsd enforces the prune guard for every socket client") {
  // Issue 31 item 11: over the raw socket a cut-off in the future, or one under an hour
  // without force, was accepted.
  Rig rig;
  rig.start();
  REQUIRE(rig.ctl({"enqueue", "pr-1"}).exit_code == 0);
  REQUIRE(rig.ctl({"wait", "--timeout", "30"}).exit_code == 0);
  UnixClient client(rig.socket_path());
  auto future = client.request(R"({"op":"prune","before_ms":9000000000000})");
  REQUIRE(future);
  CHECK(future->find("in the future") != std::string::npos);
  auto young = client.request(R"({"op":"prune","older_than_ms":0})");
  REQUIRE(young);
  CHECK(young->find("under an hour") != std::string::npos);
  CHECK(read_jobs(rig.db_path()).size() == 1);  // nothing was pruned
  auto forced = client.request(R"({"op":"prune","older_than_ms":0,"force":true})");
  REQUIRE(forced);
  CHECK(forced->find("\"pruned\":1") != std::string::npos);
  rig.skip_calls_check("prune deletes the job with its attempt row");
}

TEST_CASE("the HTTP port answers 421 to a request for another name (DNS rebinding)") {
  // Issue 31 item 6: a page under any name could read /api/failures through the browser.
  Rig rig({.config = {{"metrics.listen", "127.0.0.1:0"}}});
  rig.start();
  TcpClient tcp(rig.metrics_port());
  REQUIRE(tcp.send_all("GET /api/failures HTTP/1.1\r\nHost: attacker.example:" +
                       std::to_string(rig.metrics_port()) + "\r\nConnection: close\r\n\r\n"));
  auto status = tcp.read_line();
  REQUIRE(status);
  CHECK(status->starts_with("HTTP/1.1 421"));
  CHECK(http_get(rig.metrics_port(), "/metrics").starts_with("HTTP/1.1 200"));
}

TEST_CASE("--check-config and the start warn about a token others may read - and 0.0.0.0") {
  // Issue 31 items 9 and 6.
  Rig rig({.config = {{"metrics.listen", "0.0.0.0:0"}}});
  namespace fs = std::filesystem;
  fs::permissions(rig.dir().file("token"), fs::perms::owner_read | fs::perms::owner_write |
                                               fs::perms::group_read | fs::perms::others_read);
  auto check = run_command({KPSD_BIN, "--config", rig.config_path(), "--check-config"},
                           rig.dir().path().string());
  CHECK(check.exit_code == 0);
  CHECK(check.err.find("kpsd: warning: auth.token_file: " + rig.dir().file("token") +
                       " holds a secret but every user may read it (mode 0644)") !=
        std::string::npos);
  CHECK(check.err.find("metrics.listen = 0.0.0.0:0 is reachable from other hosts") !=
        std::string::npos);
  rig.start();
  CHECK(rig.log().find("every user may read it (mode 0644)") != std::string::npos);
}

TEST_CASE("kpsd leaves no core file: it is not dumpable") {
  // Issue 31 item 7: with RLIMIT_CORE raised, a crash wrote kpsd's memory (the credential,
  // jobs' keys) to a core file.
  std::string pattern = TempDir::slurp_file("/proc/sys/kernel/core_pattern");
  if (pattern.empty() || pattern.front() != 'c') {
    MESSAGE("SKIPPED: core_pattern is `" << pattern << "`, not a file in the working folder");
    return;
  }
  TempDir cwd;
  Rig rig({.launcher = {
               "/bin/sh", "-c",
               "cd " + cwd.path().string() + " && ulimit -c unlimited && exec \"$0\" \"$@\""}});
  rig.start();
  rig.daemon().signal(SIGSEGV);
  REQUIRE(rig.daemon().wait(10s).has_value());
  bool core = false;
  for (const auto& entry : std::filesystem::directory_iterator(cwd.path()))
    core = core || entry.path().filename().string().starts_with("core");
  CHECK_FALSE(core);
}

TEST_CASE("three replace-form jobs ended: kpsd's memory no longer holds their key") {
  // Issue 31 item 7: a core taken after three replace-form jobs ended still held the private
  // key in freed heap (SQLite's copy). kpsd gives SQLite a zeroing allocator; buffers that held
  // a key are zeroed. gcore (gdb) reads the live process as root can.
  if (::geteuid() != 0 || !std::filesystem::exists("/usr/bin/gcore")) {
    MESSAGE("SKIPPED: needs root and gcore (Debian package gdb) to read kpsd's memory");
    return;
  }
  if (std::getenv("ASAN_OPTIONS")) {
    // AddressSanitizer's shadow maps terabytes: no core of it is worth taking (and its
    // allocator keeps freed blocks in quarantine on purpose).
    MESSAGE("SKIPPED: under the sanitizers (the normal build runs it)");
    return;
  }
  const std::string marker = "KEYMATERIAL-4e1d0c9a7b55";
  Rig rig({.fake = {.task_duration = 20ms}});
  std::string key_file = rig.dir().write(
      "id_rsa", "-----BEGIN RSA PRIVATE KEY-----\n" + marker + "\n-----END RSA PRIVATE KEY-----\n");
  rig.start();
  auto enq = rig.ctl(
      {"enqueue", "--auth-type", "keypair", "--key-file", key_file, "core-1", "core-2", "core-3"});
  REQUIRE_MESSAGE(enq.exit_code == 0, enq.err);
  REQUIRE(rig.ctl({"wait", "--timeout", "30"}).exit_code == 0);
  std::string core = rig.dir().file("kpsd-core");
  auto dump = run_command({"/usr/bin/gcore", "-o", core, std::to_string(rig.daemon().pid())},
                          rig.dir().path().string());
  REQUIRE_MESSAGE(dump.exit_code == 0, dump.out << dump.err);
  std::string image = TempDir::slurp_file(core + "." + std::to_string(rig.daemon().pid()));
  REQUIRE(image.size() > 100000);
  bool held = image.find(marker) != std::string::npos;
  CHECK_FALSE(held);
  // Kept for a post-mortem when it held the key (the folder goes unless KPSD_TEST_KEEP).
  if (!held) std::filesystem::remove(core + "." + std::to_string(rig.daemon().pid()));
}
