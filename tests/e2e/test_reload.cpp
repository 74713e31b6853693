// `kpsctl reload` (what systemctl reload runs): it answers once kpsd has applied the file, or
// fails with kpsd's reason and changes nothing; SIGHUP itself: what it applies live (concurrency,
// rate, log level, credentials) and the keys it names as needing a restart. And the audit
// line's user name.
#include "control/peer_identity.hpp"
#include "e2e_rig.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <regex>
#include <unistd.h>

using namespace kpsd::test;
using namespace std::chrono_literals;

namespace {

std::string replaced(std::string text, const std::string& from, const std::string& to) {
  auto at = text.find(from);
  REQUIRE_MESSAGE(at != std::string::npos, from);
  return text.replace(at, from.size(), to);
}

// "uid N (NAME) pid ", with NAME this process's user when the system knows it.
std::string audit_caller() {
  std::string name = kpsd::user_name(::geteuid());
  return "uid " + std::to_string(::geteuid()) + (name.empty() ? "" : " (" + name + ")") + " pid ";
}

std::string regex_quoted(const std::string& text) {
  return std::regex_replace(text, std::regex(R"([()\[\]{}.*+?^$|\\])"), R"(\$&)");
}

}  // namespace

TEST_CASE("kpsctl reload answers once applied - a bad file fails with 78 and changes nothing") {
  Rig rig;
  rig.start();
  const std::string original = slurp(rig.config_path());
  std::string conf = replaced(original, "rate_per_second = 0", "rate_per_second = 20");
  conf = replaced(conf, "request_timeout_ms = 2000", "request_timeout_ms = 3000");
  rig.dir().write("kpsd.conf", conf);

  auto done = rig.ctl({"reload"});
  CHECK(done.exit_code == 0);
  CHECK(done.out ==
        "applied: queue.rate_per_second 0 -> 20\n"
        "needs a restart (systemctl restart kpsd): kps.request_timeout_ms 2000 -> 3000\n"
        "reloaded\n");
  // In force when kpsctl returns: no waiting, no polling.
  CHECK(rig.ctl_json({"stats"}).at("configured_rate_per_second").to_number<double>() == 20);
  CHECK(rig.log().find("reload: applied queue.rate_per_second 0 -> 20") != std::string::npos);
  CHECK(rig.log().find("control: " + audit_caller()) != std::string::npos);
  CHECK(rig.log().find(": reload\n") != std::string::npos);

  // A file that does not parse: exit 78 with kpsd's one-line reason; nothing changes.
  rig.dir().write("kpsd.conf",
                  replaced(original, "rate_per_second = 0", "rate_per_second = 5") + "bogus = 1\n");
  auto refused = rig.ctl({"reload"});
  CHECK(refused.exit_code == 78);
  CHECK(refused.out.empty());
  CHECK(std::regex_search(
      refused.err, std::regex("^kpsctl: error: reload: .*kpsd.conf:[0-9]+: .*unknown key; keeping "
                              "the running configuration\n$")));
  CHECK(rig.ctl_json({"stats"}).at("configured_rate_per_second").to_number<double>() == 20);
  auto as_json = rig.ctl({"-o", "json", "reload"});
  CHECK(as_json.exit_code == 78);
  auto reply = boost::json::parse(as_json.out).as_object();
  CHECK(reply.at("ok").as_bool() == false);
  CHECK(reply.at("exit_code").as_int64() == 78);

  REQUIRE(rig.ctl({"enqueue", "reload-1"}).exit_code == 0);
  CHECK(rig.ctl({"wait", "--timeout", "30"}).exit_code == 0);
  CHECK(rig.daemon().running());
}

TEST_CASE("the audit line names the caller by uid and user name") {
  Rig rig;
  rig.start();
  auto enq = rig.ctl({"enqueue", "audit-1"});
  REQUIRE(enq.exit_code == 0);
  REQUIRE(rig.ctl({"pause"}).exit_code == 0);
  REQUIRE(rig.ctl({"resume"}).exit_code == 0);
  CHECK(rig.log().find("enqueue from " + audit_caller()) != std::string::npos);
  CHECK(std::regex_search(
      rig.log(), std::regex("control: " + regex_quoted(audit_caller()) + "[0-9]+: pause")));
  if (::geteuid() == 0) CHECK(audit_caller().starts_with("uid 0 (root) pid "));
}

TEST_CASE("SIGHUP applies concurrency and rate_per_second and names the keys that need a restart") {
  // Under a 1024-descriptor limit, so that a concurrency too high for it can be refused.
  RigOptions options{.fake = {.call_delay = 150ms}};
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
