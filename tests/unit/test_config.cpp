// kpsd.conf as kpsd reads it (config/config.cpp, config/config_keys.cpp): defaults, every key,
// errors naming the file, line and key, the auth methods, SIGHUP's comparison, and the one
// table of keys against conf/kpsd.conf.
#include "auth/credential_answers.hpp"
#include "config/config.hpp"
#include "config/config_keys.hpp"
#include "config/regions.hpp"
#include "net/fd_limit.hpp"
#include "temp_dir.hpp"
#include "config_helpers.hpp"

#include <doctest/doctest.h>

#include <fstream>
#include <set>

using namespace kpsd;
using namespace kpsd::test;
using namespace std::chrono_literals;

TEST_CASE("a minimal config gets the documented defaults") {
  Config c = parse_config(minimal, "test.conf");
  CHECK(c.kps.endpoint.scheme == "http");
  CHECK(c.kps.endpoint.host == "127.0.0.1");
  CHECK(c.kps.endpoint.port == 8080);
  CHECK(c.kps.request_timeout == 15000ms);
  CHECK(c.kps.poll_tasks);
  CHECK(c.kps.poll_initial_delay == 10000ms);
  CHECK(c.kps.poll_interval == 20000ms);
  CHECK(c.kps.poll_timeout == 1800000ms);
  CHECK(c.auth.token_file == "/etc/kpsd/kps-token");
  CHECK(c.queue.database == "/var/lib/kpsd/jobs.db");
  CHECK(c.queue.concurrency == 64);
  CHECK(c.queue.rate_per_second == 0);  // auto
  CHECK(c.queue.max_attempts == 8);
  CHECK(c.queue.backoff_initial == 1000ms);
  CHECK(c.queue.backoff_max == 300000ms);
  CHECK(c.control.socket == "/run/kpsd/kpsd.sock");
  CHECK(c.control.socket_mode == 0660);
  CHECK(c.log.level == "info");
}

TEST_CASE("every key is read with comments and blank lines around") {
  Config c = parse_config(
      "# comment\n\n[kps]\nendpoint = https://kms.example.test   # trailing comment\n"
      "project_id = 0123456789abcdef0123456789abcdef\nca_file = /etc/ssl/ca.pem\n"
      "request_timeout_ms = 500\npoll_tasks = false\npoll_initial_delay_ms = 0\n"
      "poll_interval_ms = 100\npoll_timeout_ms = 9000\n"
      "[auth]\nmethod = token\ntoken_file = /tmp/tok\n"
      "[queue]\ndatabase = /tmp/j.db\nconcurrency = 3\nrate_per_second = 2.5\n"
      "max_attempts = 4\nbackoff_initial_ms = 10\nbackoff_max_ms = 20\n"
      "[control]\nsocket = /tmp/s.sock\nsocket_mode = 0600\n"
      "[log]\nlevel = debug\n",
      "full.conf");
  CHECK(c.kps.endpoint.port == 443);
  CHECK(c.kps.ca_file == "/etc/ssl/ca.pem");
  CHECK(c.kps.request_timeout == 500ms);
  CHECK_FALSE(c.kps.poll_tasks);
  CHECK(c.kps.poll_initial_delay == 0ms);
  CHECK(c.kps.poll_interval == 100ms);
  CHECK(c.kps.poll_timeout == 9000ms);
  CHECK(c.auth.token_file == "/tmp/tok");
  CHECK(c.queue.database == "/tmp/j.db");
  CHECK(c.queue.concurrency == 3);
  CHECK(c.queue.rate_per_second == 2.5);
  auto automatic = parse_config(
      "[kps]\nendpoint = https://kps.example.com\nproject_id = 0123456789abcdef0123456789abcdef\n"
      "[auth]\ntoken_file = /t\n"
      "[queue]\nrate_per_second = auto\n",
      "auto.conf");
  CHECK(automatic.queue.rate_per_second == 0);
  CHECK(c.queue.max_attempts == 4);
  CHECK(c.queue.backoff_initial == 10ms);
  CHECK(c.queue.backoff_max == 20ms);
  CHECK(c.control.socket == "/tmp/s.sock");
  CHECK(c.control.socket_mode == 0600);
  CHECK(c.log.level == "debug");
}

TEST_CASE("errors name the file the line and the key") {
  struct Case {
    std::string text;
    std::string expected;
  };
  const Case cases[] = {
      {minimal + "bogus = 1\n", "test.conf:4: kps.bogus: unknown key"},
      {minimal + "[nope]\n", "test.conf:4: [nope]: unknown section"},
      {minimal + "request_timeout_ms = ten\n",
       "test.conf:4: kps.request_timeout_ms: `ten` is not a whole number"},
      {minimal + "request_timeout_ms = 0\n",
       "test.conf:4: kps.request_timeout_ms: `0` is out of range"},
      {minimal + "poll_tasks = maybe\n", "test.conf:4: kps.poll_tasks: `maybe` is not a boolean"},
      {minimal + "[queue]\nconcurrency = -1\n",
       "test.conf:5: queue.concurrency: `-1` is out of range"},
      {minimal + "[queue]\nrate_per_second = fast\n", "test.conf:5: queue.rate_per_second: `fast`"},
      {minimal + "[queue]\nrate_per_second = Auto\n",
       "test.conf:5: queue.rate_per_second: `Auto` must be auto"},
      {minimal + "[queue]\nbackoff_initial_ms = 100\nbackoff_max_ms = 10\n",
       "test.conf:6: queue.backoff_max_ms: must not be smaller"},
      {minimal + "[control]\nsocket_mode = 0666\n",
       "test.conf:5: control.socket_mode: `0666` gives access to other users"},
      {minimal + "[control]\nmax_clients = 0\n", "test.conf:5: control.max_clients: `0`"},
      {minimal + "[control]\nsocket_mode = 9\n",
       "test.conf:5: control.socket_mode: `9` is not a whole number"},
      {minimal + "[log]\nlevel = loud\n", "test.conf:5: log.level: `loud` is not one of"},
      {minimal + "[auth]\nmethod = magic\n",
       "test.conf:5: auth.method: `magic` is not one of token, iam_password, aksk"},
      {minimal + "[auth]\nak_file = /x\n",
       "test.conf:5: auth.ak_file: is only used with method = aksk"},
      {minimal + "[auth]\nmethod = aksk\nak_file = /x\n",
       "test.conf: auth.sk_file: required but not set"},
      {minimal + "[auth]\nmethod = iam_password\niam_endpoint = https://iam.example\ndomain = d\n"
                 "user = u\npassword_file = /p\n",
       "test.conf: auth.project: required but not set"},
      {minimal + "[auth]\nmethod = iam_password\niam_endpoint = iam.example\n",
       "test.conf:6: auth.iam_endpoint: `iam.example` must start with https://"},
      {minimal + "[metrics]\nlisten = 9464\n",
       "test.conf:5: metrics.listen: `9464` must be ADDRESS:PORT"},
      {minimal + "endpoint = http://x\n", "test.conf:4: kps.endpoint: set twice (first on line 2)"},
      {"[kps]\nproject_id = 0123456789abcdef0123456789abcdef\n",
       "test.conf: kps.endpoint: required but not set"},
      {"[kps]\nendpoint = ftp://x\nproject_id = 0123456789abcdef0123456789abcdef\n",
       "test.conf:2: kps.endpoint: `ftp://x` must start with https://"},
      // Issue 31: a secret in clear only to this machine.
      {"[kps]\nendpoint = http://kms.example.test\nproject_id = 0123456789abcdef0123456789abcdef\n",
       "test.conf:2: kps.endpoint: `http://kms.example.test` is plain http to another host: the "
       "token or the signed requests would cross the network in clear; use https:// (http:// "
       "only to a loopback address)"},
      {minimal + "[auth]\nmethod = iam_password\niam_endpoint = http://10.1.2.3:8080\n"
                 "domain = d\nuser = u\npassword_file = /p\nproject = cn-north-4\n",
       "test.conf:6: auth.iam_endpoint: `http://10.1.2.3:8080` is plain http to another host: "
       "the IAM password and the tokens would cross the network in clear; use https:// "
       "(http:// only to a loopback address)"},
      {"[kps]\nendpoint = http://x:99999\nproject_id = 0123456789abcdef0123456789abcdef\n",
       "test.conf:2: kps.endpoint: `http://x:99999` has an invalid port"},
      {"[kps]\nendpoint = http://x/v3\nproject_id = 0123456789abcdef0123456789abcdef\n",
       "test.conf:2: kps.endpoint: `http://x/v3` must be a base URL without a path"},
      {"[kps]\nendpoint = https://x\nproject_id = 1234\n",
       "test.conf:3: kps.project_id: `1234` must be 32 hexadecimal characters"},
      {"endpoint = http://x\n", "test.conf:1: endpoint: key outside of a [section]"},
      {"[kps\n", "test.conf:1: section header must look like [name]"},
      {"[kps]\njust words\n", "test.conf:2: expected `key = value`"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.text);
    std::string err = error_of(c.text);
    CHECK_MESSAGE(err.starts_with(c.expected), err);
  }
}

TEST_CASE("control.socket longer than a Unix socket path holds is refused at config check") {
  // sun_path is 108 bytes: 107 and the NUL. bind() would fail only at start, "File name too
  // long"; the check (kpsd --check-config and the start alike) names the key, path and limit.
  std::string at_limit = "/run/" + std::string(107 - 5 - 5, 'k') + ".sock";
  REQUIRE(at_limit.size() == 107);
  CHECK(parse_config(minimal + "[control]\nsocket = " + at_limit + "\n", "test.conf")
            .control.socket == at_limit);
  std::string over = "/run/" + std::string(107 - 5 - 5 + 1, 'k') + ".sock";
  CHECK(error_of(minimal + "[control]\nsocket = " + over + "\n") ==
        "test.conf:5: control.socket: `" + over +
            "` is 108 bytes long; a Unix socket path holds at most 107 bytes (choose a shorter "
            "path)");
}

TEST_CASE("an unknown key or section gets a did-you-mean - or the section the key belongs in") {
  CHECK(error_of(minimal + "[queue]\nconcurency = 4\n") ==
        "test.conf:5: queue.concurency: unknown key (did you mean `concurrency`?)");
  CHECK(error_of(minimal + "[queue]\nsocket = /run/k.sock\n") ==
        "test.conf:5: queue.socket: unknown key (`socket` belongs in [control])");
  CHECK(error_of(minimal + "[metric]\n") ==
        "test.conf:4: [metric]: unknown section (did you mean `metrics`?)");
  CHECK(error_of(minimal + "bogus = 1\n") == "test.conf:4: kps.bogus: unknown key");  // none near
}

TEST_CASE("the shipped example configuration parses with the documented defaults") {
  Config c = load_config(KPSD_SOURCE_DIR "/conf/kpsd.conf");
  Config defaults = parse_config(minimal, "minimal.conf");
  CHECK(c.kps.endpoint.scheme == "https");
  CHECK(c.kps.request_timeout == defaults.kps.request_timeout);
  CHECK(c.kps.poll_interval == defaults.kps.poll_interval);
  CHECK(c.queue.concurrency == defaults.queue.concurrency);
  CHECK(c.queue.rate_per_second == defaults.queue.rate_per_second);
  CHECK(c.queue.max_attempts == defaults.queue.max_attempts);
  CHECK(c.queue.drain_grace == defaults.queue.drain_grace);
  CHECK(c.queue.throttle_backoff == defaults.queue.throttle_backoff);
  CHECK(c.queue.retry_after_max == defaults.queue.retry_after_max);
  CHECK(c.queue.retry_after_max == std::chrono::hours(1));
  CHECK(c.control.socket_mode == defaults.control.socket_mode);
  CHECK(c.control.max_clients == defaults.control.max_clients);
  CHECK(c.control.max_clients == 256);
  CHECK(c.auth.token_file == defaults.auth.token_file);
  CHECK_FALSE(c.metrics.enabled);
}

TEST_CASE("each auth method reads its own keys") {
  Config iam = parse_config(minimal +
                                "[auth]\nmethod = iam_password\n"
                                "iam_endpoint = https://iam.cn-north-4.myhuaweicloud.com\n"
                                "domain = acct\nuser = ops\npassword_file = iam-password\n"
                                "project = cn-north-4\n",
                            "iam.conf");
  CHECK(iam.auth.method == AuthMethod::iam_password);
  CHECK(iam.auth.iam_endpoint.host == "iam.cn-north-4.myhuaweicloud.com");
  CHECK(iam.auth.iam_endpoint.port == 443);
  CHECK(iam.auth.user == "ops");
  CHECK(iam.auth.password_file == "iam-password");
  CHECK(iam.auth.project == "cn-north-4");
  Config aksk = parse_config(minimal + "[auth]\nmethod = aksk\nak_file = /k/ak\nsk_file = /k/sk\n",
                             "aksk.conf");
  CHECK(aksk.auth.method == AuthMethod::aksk);
  CHECK(aksk.auth.sk_file == "/k/sk");
}

TEST_CASE("load_config reads a file and says when it cannot") {
  test::TempDir dir;
  std::string path = dir.write("kpsd.conf", minimal);
  CHECK(load_config(path).kps.endpoint.port == 8080);
  // The reason is said, and the path: a missing file, a directory.
  CHECK_THROWS_WITH_AS(load_config(dir.file("missing.conf")),
                       ("cannot read the configuration file " + dir.file("missing.conf") +
                        ": No such file or directory")
                           .c_str(),
                       ConfigError);
  CHECK_THROWS_WITH_AS(
      load_config(dir.path().string()),
      ("cannot read the configuration file " + dir.path().string() + ": Is a directory").c_str(),
      ConfigError);
}

TEST_CASE("descriptors needed: one per call and per client plus a reserve") {
  Config c = parse_config(minimal, "minimal.conf");
  c.queue.concurrency = 1500;
  c.control.max_clients = 256;
  CHECK(descriptors_needed(c) == 1500 + 256 + reserved_descriptors);
  c.metrics.enabled = true;
  CHECK(descriptors_needed(c) == 1500 + 256 + reserved_descriptors + max_metrics_clients);
  FdLimit now = raise_fd_limit();
  CHECK(now.soft > 0);
  CHECK(now.soft <= now.hard);
}

TEST_CASE("SIGHUP's comparison names changed - added and removed keys and which apply live") {
  Config before = parse_config(minimal + "[queue]\nconcurrency = 8\nmax_attempts = 3\n", "a");
  Config after = parse_config(minimal + "[queue]\nconcurrency = 16\nrate_per_second = 5\n", "b");
  auto changed = changed_keys(before, after);
  REQUIRE(changed.size() == 3);
  CHECK(changed[0] == "queue.concurrency");
  CHECK(changed[1] == "queue.max_attempts");
  CHECK(changed[2] == "queue.rate_per_second");
  CHECK(changed_keys(before, before).empty());
  CHECK(applies_on_reload("queue.concurrency"));
  CHECK(applies_on_reload("queue.rate_per_second"));
  CHECK(applies_on_reload("log.level"));
  CHECK_FALSE(applies_on_reload("kps.endpoint"));
  CHECK_FALSE(applies_on_reload("auth.method"));
  CHECK_FALSE(applies_on_reload("queue.database"));
}

// conf/kpsd.conf is kpsd.conf(5): each key of the table is there, in its section, set or shown
// commented out (`key = ...` or `#   key = ...`), and the file shows no key kpsd does not know.
TEST_CASE("the table of keys: conf/kpsd.conf documents every key in its section and no other") {
  std::ifstream in(KPSD_SOURCE_DIR "/conf/kpsd.conf");
  REQUIRE(in);
  std::set<std::string> documented;
  std::string line, section;
  while (std::getline(in, line)) {
    if (line.starts_with("[") && line.ends_with("]")) {
      section = line.substr(1, line.size() - 2);
      continue;
    }
    std::size_t at = line.find_first_not_of("# ");
    if (at == std::string::npos) continue;
    std::size_t end = line.find_first_not_of("abcdefghijklmnopqrstuvwxyz_", at);
    if (end == at || end == std::string::npos || line.compare(end, 2, " =") != 0) continue;
    documented.insert(section + "." + line.substr(at, end - at));
  }
  std::set<std::string> table;
  for (const ConfigKey& k : config_keys()) {
    table.emplace(k.name);
    CHECK_MESSAGE(documented.contains(std::string(k.name)),
                  k.name << " is not documented in its section of conf/kpsd.conf");
    CHECK(find_config_key(k.name) == &k);
  }
  for (const std::string& name : documented) {
    CHECK_MESSAGE(table.contains(name),
                  "conf/kpsd.conf shows " << name << ", which kpsd does not know");
  }
  CHECK(table.size() == config_keys().size());  // no key twice
  CHECK(find_config_key("queue.concurency") == nullptr);
  // Each section's keys are together, so parse_config runs each reader once.
  std::set<std::string_view> sections_seen;
  std::string_view previous;
  for (const ConfigKey& k : config_keys()) {
    if (k.section() != previous) CHECK(sections_seen.insert(k.section()).second);
    previous = k.section();
  }
}
