// End to end: kpsd under systemd: READY/STATUS/STOPPING notifications, the unit file
// (systemd-analyze verify), credentials from $CREDENTIALS_DIRECTORY, and log lines for journald.
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

TEST_CASE("log lines: a syslog priority under journald - UTC times otherwise - the server named") {
  Rig journal({.fake = {.task_duration = 20ms}});
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
