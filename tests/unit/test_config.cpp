#include "auth/credential_answers.hpp"
#include "config/config.hpp"
#include "config/regions.hpp"
#include "net/fd_limit.hpp"
#include "temp_dir.hpp"

#include <doctest/doctest.h>

using namespace kpsd;
using namespace std::chrono_literals;

namespace {

const std::string minimal =
    "[kps]\n"
    "endpoint = http://127.0.0.1:8080\n"
    "project_id = 0123456789abcdef0123456789ABCDEF\n";

std::string error_of(const std::string& text) {
  try {
    parse_config(text, "test.conf");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

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

TEST_CASE("region table: KPS and IAM endpoints as the vendor's tooling derives them") {
  struct Row {
    const char* region;
    const char* kps;
    const char* iam;
  };
  const Row rows[] = {
      {"cn-north-4", "https://kms.cn-north-4.myhuaweicloud.com",
       "https://iam.cn-north-4.myhuaweicloud.com"},
      {"ap-southeast-1", "https://kms.ap-southeast-1.myhuaweicloud.com",
       "https://iam.ap-southeast-1.myhuaweicloud.com"},
      {"my-kualalumpur-1", "https://kms.my-kualalumpur-1.myhuaweicloud.com",
       "https://iam.my-kualalumpur-1.myhuaweicloud.com"},
      {"tr-west-1", "https://kms.tr-west-1.myhuaweicloud.com",
       "https://iam.tr-west-1.myhuaweicloud.com"},
      // The European cloud: Terraform's getCloudDomain, the SDKs' KMS and IAM tables.
      {"eu-west-101", "https://kms.eu-west-101.myhuaweicloud.eu",
       "https://iam.eu-west-101.myhuaweicloud.eu"},
  };
  for (const Row& r : rows) {
    CAPTURE(r.region);
    auto e = region_endpoints(r.region);
    REQUIRE(e);
    CHECK(e->kps == r.kps);
    CHECK(e->iam == r.iam);
  }
  CHECK(known_regions().size() == 32);
  CHECK_FALSE(region_endpoints("cn-north-44"));
  CHECK_FALSE(region_endpoints("eu-west-0"));  // IAM only: KPS is not served there
  CHECK_FALSE(region_endpoints(""));
}

TEST_CASE("kps.region derives the endpoints - explicit ones win - project_id auto needs it") {
  const std::string pid = "project_id = 0123456789abcdef0123456789abcdef\n";
  Config c = parse_config("[kps]\nregion = eu-west-101\n" + pid, "r.conf");
  CHECK(c.kps.endpoint.host == "kms.eu-west-101.myhuaweicloud.eu");
  CHECK(c.kps.endpoint.scheme == "https");
  CHECK(c.auth.iam_endpoint.host == "iam.eu-west-101.myhuaweicloud.eu");
  c = parse_config("[kps]\nregion = cn-north-4\nendpoint = http://127.0.0.1:9\n" + pid +
                       "[auth]\nmethod = iam_password\ndomain = d\nuser = u\npassword_file = p\n",
                   "r.conf");
  CHECK(c.kps.endpoint.host == "127.0.0.1");
  CHECK(c.auth.iam_endpoint.host == "iam.cn-north-4.myhuaweicloud.com");
  CHECK(c.auth.project == "cn-north-4");  // the region's project, unless auth.project says
  c = parse_config(
      "[kps]\nregion = cn-north-4\nproject_id = auto\n"
      "[auth]\niam_endpoint = http://127.0.0.1:7\n",
      "r.conf");
  CHECK(c.kps.project_id_auto);
  CHECK(c.kps.project_id.empty());
  CHECK(c.auth.iam_endpoint.port == 7);
  // A region not in the table still works with endpoints given by hand.
  c = parse_config("[kps]\nregion = xx-new-1\nendpoint = https://kms.xx-new-1.example\n" + pid,
                   "r.conf");
  CHECK(c.kps.endpoint.host == "kms.xx-new-1.example");
  CHECK_THROWS_WITH_AS(parse_config("[kps]\nregion = cn-nrth-4\n" + pid, "r.conf"),
                       doctest::Contains("r.conf:2: kps.region: `cn-nrth-4` is not a region kpsd "
                                         "knows (cn-north-4 cn-north-1"),
                       ConfigError);
  CHECK_THROWS_WITH_AS(
      parse_config("[kps]\nendpoint = https://kms.example\nproject_id = auto\n", "r.conf"),
      doctest::Contains("r.conf:3: kps.project_id: auto looks the project up by its region name"),
      ConfigError);
  CHECK_THROWS_WITH_AS(
      parse_config("[kps]\nregion = xx-new-1\nendpoint = https://kms.example\nproject_id = auto\n",
                   "r.conf"),
      doctest::Contains("kps.project_id: auto needs an IAM endpoint: set auth.iam_endpoint"),
      ConfigError);
}

TEST_CASE("kps.proxy: a URL - none - or unset - credentials never in the file") {
  Config c = parse_config(minimal + "proxy = http://proxy.corp:3128\n", "p.conf");
  CHECK(c.kps.proxy == "http://proxy.corp:3128");
  c = parse_config(minimal + "proxy = none\n", "p.conf");
  CHECK(c.kps.proxy == "none");
  c = parse_config(minimal + "proxy = http://proxy.corp:3128\nproxy_credentials_file = proxy-pw\n",
                   "p.conf");
  CHECK(c.kps.proxy_credentials_file == "proxy-pw");
  CHECK_THROWS_WITH_AS(
      parse_config(minimal + "proxy = http://u:secret@proxy.corp:3128\n", "p.conf"),
      doctest::Contains("p.conf:4: kps.proxy: `http://***@proxy.corp:3128` holds "
                        "credentials: put user:password in "
                        "kps.proxy_credentials_file"),
      ConfigError);
  CHECK_THROWS_WITH_AS(parse_config(minimal + "proxy = socks5://proxy:1080\n", "p.conf"),
                       doctest::Contains("is not an http:// proxy"), ConfigError);
  CHECK_THROWS_WITH_AS(
      parse_config(minimal + "proxy = none\nproxy_credentials_file = pw\n", "p.conf"),
      doctest::Contains("kps.proxy_credentials_file: is set but kps.proxy = none"), ConfigError);
}

TEST_CASE("project lookup: only projects named exactly after the region - odd answers refused") {
  std::string why;
  auto found = matching_projects(
      R"({"projects":[{"id":"a1","name":"cn-north-4"},{"id":"b2","name":"cn-north-4_sub"},)"
      R"({"id":"c3","name":"CN-NORTH-4"},{"id":4,"name":"cn-north-4"},{"name":"cn-north-4"},)"
      R"("x",{"id":"d5","name":"cn-north-4","enabled":false}]})",
      "cn-north-4", why);
  CHECK(why.empty());
  REQUIRE(found.size() == 2);
  CHECK(found[0].id == "a1");
  CHECK(found[1].id == "d5");
  CHECK(matching_projects(R"({"projects":[]})", "cn-north-4", why).empty());
  CHECK(why.empty());
  CHECK(matching_projects(R"({"project":[]})", "cn-north-4", why).empty());
  CHECK(why.find("not {\"projects\"") != std::string::npos);
  CHECK(matching_projects("<html>", "cn-north-4", why).empty());
}

TEST_CASE("config traps: an endpoint of another region - a bare word as proxy - an empty project") {
  const std::string pid = "project_id = 0123456789abcdef0123456789abcdef\n";
  CHECK_THROWS_WITH_AS(
      parse_config("[kps]\nregion = ap-southeast-1\nendpoint = https://kms.cn-north-4."
                   "myhuaweicloud.com\n" +
                       pid,
                   "t.conf"),
      doctest::Contains("t.conf:3: kps.endpoint: `https://kms.cn-north-4.myhuaweicloud.com` is in "
                        "region cn-north-4 but kps.region is ap-southeast-1"),
      ConfigError);
  CHECK(parse_config(minimal + "proxy = NONE\n", "t.conf").kps.proxy == "none");
  CHECK_THROWS_WITH_AS(parse_config(minimal + "proxy = nnone\n", "t.conf"),
                       doctest::Contains("t.conf:4: kps.proxy: `nnone` has no http:// scheme"),
                       ConfigError);
  CHECK_THROWS_WITH_AS(
      parse_config("[kps]\nregion = cn-north-4\n" + pid +
                       "[auth]\nmethod = iam_password\ndomain = d\nuser = u\npassword_file = p\n"
                       "project =\n",
                   "t.conf"),
      doctest::Contains("t.conf:9: auth.project: must not be empty"), ConfigError);
}
