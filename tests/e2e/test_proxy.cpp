// End to end through a real forward proxy (Debian's tinyproxy, started here on loopback): HTTPS
// by CONNECT with TLS verified end to end, Basic proxy credentials, the environment's
// https_proxy and no_proxy, a refused CONNECT and an unreachable proxy.
#include "e2e_rig.hpp"
#include "tls_certs.hpp"

#include <boost/asio/ip/tcp.hpp>

#include <doctest/doctest.h>

#include <thread>

using namespace kpsd;
using namespace kpsd::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* tinyproxy_bin = "/usr/bin/tinyproxy";

// A port nothing listens on right now (tinyproxy takes no port 0).
std::uint16_t free_port() {
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor a(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
  return a.local_endpoint().port();
}

bool accepts(std::uint16_t port) {
  boost::asio::io_context io;
  boost::asio::ip::tcp::socket s(io);
  boost::system::error_code ec;
  s.connect({boost::asio::ip::make_address("127.0.0.1"), port}, ec);
  return !ec;
}

// tinyproxy in the foreground with its own configuration, logging each request line.
class TinyProxy {
 public:
  // `extra`: more configuration lines ("BasicAuth user password", "ConnectPort 443").
  TinyProxy(const TempDir& dir, const std::string& extra = "") : port_(free_port()) {
    log_ = dir.file("tinyproxy.log");
    std::string conf = "Port " + std::to_string(port_) +
                       "\nListen 127.0.0.1\nTimeout 60\nMaxClients 200\nAllow 127.0.0.1\n"
                       "LogLevel Connect\nLogFile \"" +
                       log_ + "\"\n" + extra + "\n";
    std::string conf_file = dir.write("tinyproxy.conf", conf);
    process_ =
        std::make_unique<Process>(std::vector<std::string>{tinyproxy_bin, "-d", "-c", conf_file},
                                  dir.file("tinyproxy.out"), dir.file("tinyproxy.err"));
    wait_until([&] { return accepts(port_); }, 10s, "tinyproxy to listen");
  }
  std::uint16_t port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::string log() const { return slurp(log_); }
  // Request lines the proxy logged ("CONNECT 127.0.0.1:PORT HTTP/1.1", "GET http://...").
  std::size_t requests(const std::string& start) const {
    std::string text = log(), needle = "): " + start;
    std::size_t n = 0;
    for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
    return n;
  }

 private:
  std::uint16_t port_;
  std::string log_;
  std::unique_ptr<Process> process_;
};

bool have_tinyproxy() {
  if (std::filesystem::exists(tinyproxy_bin)) return true;
  MESSAGE("SKIPPED: no " << tinyproxy_bin << " (scripts/install-deps installs it)");
  return false;
}

std::vector<std::string> enqueue_args(const std::string& prefix, int n) {
  std::vector<std::string> args{"enqueue"};
  for (int i = 0; i < n; ++i) args.push_back(prefix + std::to_string(i));
  return args;
}

void wait_for_log(Rig& rig, const std::string& text, std::chrono::seconds limit = 15s) {
  wait_until([&] { return rig.log().find(text) != std::string::npos; }, limit,
             "the log to say: " + text);
}

// An https fake KPS (certificate for 127.0.0.1) and kpsd trusting its CA.
RigOptions tls_options(const CertFiles& certs, std::map<std::string, std::string> config) {
  config["kps.ca_file"] = certs.ca;
  return {
      .fake = {.task_duration = 20ms, .tls_cert_file = certs.leaf, .tls_key_file = certs.leaf_key},
      .config = std::move(config)};
}

}  // namespace

TEST_CASE("proxy: HTTPS through tinyproxy's CONNECT - TLS verified end to end - jobs succeed") {
  if (!have_tinyproxy()) return;
  TempDir certs;
  auto server = make_certs(certs, "proxy-", "IP:127.0.0.1");
  TinyProxy proxy(certs);
  Rig rig(tls_options(server, {{"kps.proxy", proxy.url()}}));
  rig.start();
  auto enq = rig.ctl(enqueue_args("px-", 30));
  REQUIRE(enq.exit_code == 0);
  CHECK(rig.ctl({"wait", "--batch", Rig::batch_of(enq), "--timeout", "60"}).exit_code == 0);
  CHECK(rig.fake().disassociate_calls() == 30);
  CHECK(rig.fake().violations().empty());
  // Every connection kpsd opened went through the proxy; keep-alive reuses the tunnels.
  std::string target = "CONNECT 127.0.0.1:" + std::to_string(rig.fake().port());
  std::size_t tunnels = proxy.requests(target);
  CHECK(tunnels >= 1);
  CHECK(rig.fake().connections() == static_cast<std::int64_t>(tunnels));
  MESSAGE(tunnels << " CONNECT tunnels for " << rig.fake().requests() << " requests");
  CHECK(rig.log().find("KPS https://127.0.0.1:" + std::to_string(rig.fake().port()) +
                       ": through proxy 127.0.0.1:" + std::to_string(proxy.port()) +
                       " (kps.proxy)") != std::string::npos);
}

TEST_CASE("proxy: a wrong Basic password is blocked - no attempt used - then the right one works") {
  if (!have_tinyproxy()) return;
  TempDir certs;
  auto server = make_certs(certs, "proxy-", "IP:127.0.0.1");
  TinyProxy proxy(certs, "BasicAuth alice Pr0xy-pass-4d2a");
  Rig rig(tls_options(server, {{"kps.proxy", proxy.url()},
                               {"kps.proxy_credentials_file", "proxy-credentials"},
                               {"log.level", "debug"}}));
  rig.dir().write("proxy-credentials", "alice:Wr0ng-pass-91bc\n");
  std::vector<std::string> env{"CREDENTIALS_DIRECTORY=" + rig.dir().path().string()};
  rig.start(env);
  REQUIRE(rig.ctl({"enqueue", "pa-1", "pa-2", "pa-3"}).exit_code == 0);
  wait_for_log(rig, "refused the credentials");
  std::this_thread::sleep_for(1s);  // probes meanwhile: still blocked, still no attempt
  CHECK(rig.fake().requests() == 0);
  CHECK(rig.log().find("calls paused: proxy 127.0.0.1:" + std::to_string(proxy.port()) +
                       " refused the credentials (HTTP 40") != std::string::npos);
  CHECK(rig.stop(10s) == 0);
  rig.dir().write("proxy-credentials", "alice:Pr0xy-pass-4d2a\n");
  rig.start(env);
  CHECK(rig.ctl({"wait", "--timeout", "60"}).exit_code == 0);
  for (const auto& [id, row] : read_jobs(rig.db_path())) {
    CAPTURE(id);
    CHECK(row.state == "succeeded");
    CHECK(row.attempts == 1);  // the refusals used none
  }
  std::string log = rig.log();
  CHECK(log.find("Wr0ng-pass") == std::string::npos);
  CHECK(log.find("Pr0xy-pass") == std::string::npos);
  CHECK(log.find("YWxpY2U6") == std::string::npos);  // nor their Basic encoding
}

TEST_CASE("proxy: https_proxy from the environment - no_proxy bypasses it - proxy = none too") {
  if (!have_tinyproxy()) return;
  TempDir certs;
  auto server = make_certs(certs, "proxy-", "IP:127.0.0.1");
  TinyProxy proxy(certs);
  std::string target;
  {
    Rig rig(tls_options(server, {}));
    target = "CONNECT 127.0.0.1:" + std::to_string(rig.fake().port());
    rig.start({"https_proxy=" + proxy.url(), "no_proxy="});
    auto enq = rig.ctl(enqueue_args("env-", 5));
    REQUIRE(enq.exit_code == 0);
    CHECK(rig.ctl({"wait", "--batch", Rig::batch_of(enq), "--timeout", "60"}).exit_code == 0);
    CHECK(proxy.requests(target) >= 1);
    CHECK(rig.log().find("through proxy 127.0.0.1:" + std::to_string(proxy.port()) +
                         " ($https_proxy)") != std::string::npos);
  }
  for (auto env : std::vector<std::vector<std::string>>{
           {"https_proxy=" + proxy.url(), "no_proxy=localhost,127.0.0.0/8"},
           {"HTTPS_PROXY=" + proxy.url(), "NO_PROXY=127.0.0.1"}}) {
    CAPTURE(env[1]);
    Rig rig(tls_options(server, {}));
    target = "CONNECT 127.0.0.1:" + std::to_string(rig.fake().port());
    rig.start(env);
    auto enq = rig.ctl(enqueue_args("bypass-", 5));
    REQUIRE(enq.exit_code == 0);
    CHECK(rig.ctl({"wait", "--batch", Rig::batch_of(enq), "--timeout", "60"}).exit_code == 0);
    CHECK(rig.fake().disassociate_calls() == 5);
    CHECK(proxy.requests(target) == 0);  // straight to the fake
    CHECK(rig.log().find("direct (" + env[1].substr(0, env[1].find('=')) + " matches 127.0.0.1)") !=
          std::string::npos);
  }
  Rig rig(tls_options(server, {{"kps.proxy", "none"}}));
  target = "CONNECT 127.0.0.1:" + std::to_string(rig.fake().port());
  rig.start({"https_proxy=" + proxy.url(), "no_proxy="});
  auto enq = rig.ctl(enqueue_args("none-", 3));
  REQUIRE(enq.exit_code == 0);
  CHECK(rig.ctl({"wait", "--batch", Rig::batch_of(enq), "--timeout", "60"}).exit_code == 0);
  CHECK(proxy.requests(target) == 0);
}

TEST_CASE("proxy: a refused CONNECT is blocked with its reason - an unreachable proxy is retried") {
  if (!have_tinyproxy()) return;
  TempDir certs;
  auto server = make_certs(certs, "proxy-", "IP:127.0.0.1");
  {
    // The proxy's policy allows CONNECT to port 443 only, as tinyproxy's default does.
    TinyProxy proxy(certs, "ConnectPort 443");
    Rig rig(tls_options(server, {{"kps.proxy", proxy.url()}}));
    rig.start();
    REQUIRE(rig.ctl({"enqueue", "deny-1"}).exit_code == 0);
    wait_for_log(rig, "refused CONNECT to 127.0.0.1:" + std::to_string(rig.fake().port()));
    CHECK(rig.fake().requests() == 0);
    CHECK(rig.log().find("calls paused: proxy 127.0.0.1:" + std::to_string(proxy.port()) +
                         " refused CONNECT to 127.0.0.1:") != std::string::npos);
  }
  std::uint16_t closed = free_port();
  Rig rig(tls_options(server, {{"kps.proxy", "http://127.0.0.1:" + std::to_string(closed)},
                               {"queue.backoff_initial_ms", "100"},
                               {"queue.max_attempts", "2"}}));
  rig.start();
  auto enq = rig.ctl({"enqueue", "unreachable-1"});
  REQUIRE(enq.exit_code == 0);
  // Its batch: a bare wait that starts after the job already failed has nothing to wait for.
  CHECK(rig.ctl({"wait", "--batch", Rig::batch_of(enq), "--timeout", "30"}).exit_code != 0);
  auto jobs = read_jobs(rig.db_path());
  REQUIRE(jobs.contains("unreachable-1"));
  const JobRow& row = jobs.at("unreachable-1");
  CHECK(row.state == "failed");
  CHECK(row.error_msg.find("proxy 127.0.0.1:" + std::to_string(closed) +
                           " unreachable: connect: Connection refused") != std::string::npos);
}

TEST_CASE("proxy: plain http in the absolute form - IAM calls through it too") {
  if (!have_tinyproxy()) return;
  TempDir dir;
  TinyProxy proxy(dir);
  fake::IamOptions iam{"acct", "ops", "pw-proxy-iam", "cn-north-4"};
  RigOptions options = iam_password_options(iam);
  options.fake.task_duration = 20ms;
  options.config["kps.proxy"] = proxy.url();
  Rig rig(options);
  rig.dir().write("iam-password", "pw-proxy-iam\n");
  std::string fake = "127.0.0.1:" + std::to_string(rig.fake().port());
  rig.start({"CREDENTIALS_DIRECTORY=" + rig.dir().path().string()});
  auto enq = rig.ctl(enqueue_args("plain-", 5));
  REQUIRE(enq.exit_code == 0);
  CHECK(rig.ctl({"wait", "--batch", Rig::batch_of(enq), "--timeout", "60"}).exit_code == 0);
  CHECK(rig.fake().disassociate_calls() == 5);
  CHECK(rig.fake().violations().empty());
  // The proxy saw the IAM token request and each KPS request, in the absolute form.
  CHECK(proxy.requests("POST http://" + fake + "/v3/auth/tokens") == 1);
  CHECK(proxy.requests("POST http://" + fake + "/v3/" + project + "/keypairs/disassociate") == 5);
  CHECK(proxy.requests("GET http://" + fake + "/v3/" + project + "/tasks/") >= 5);
  std::string log = rig.log();
  CHECK(log.find("KPS http://" + fake + ": through proxy 127.0.0.1:" +
                 std::to_string(proxy.port()) + " (kps.proxy)") != std::string::npos);
  CHECK(log.find("IAM http://" + fake + ": through proxy 127.0.0.1:" +
                 std::to_string(proxy.port()) + " (kps.proxy)") != std::string::npos);
  CHECK(log.find("pw-proxy-iam") == std::string::npos);
}

TEST_CASE("proxy: --check-config prints the resolved routes - --preflight goes through the proxy") {
  if (!have_tinyproxy()) return;
  TempDir certs;
  auto server = make_certs(certs, "proxy-", "IP:127.0.0.1");
  TinyProxy proxy(certs);
  Rig rig(tls_options(server, {{"kps.proxy", proxy.url()}}));
  std::string via = "through proxy 127.0.0.1:" + std::to_string(proxy.port()) + " (kps.proxy)";
  auto check = run_command({KPSD_BIN, "--config", rig.config_path(), "--check-config"},
                           rig.dir().path().string(), 20s);
  CHECK_MESSAGE(check.exit_code == 0, check.err);
  CHECK(check.out.find("  KPS https://127.0.0.1:" + std::to_string(rig.fake().port()) + ": " +
                       via) != std::string::npos);
  CHECK(rig.fake().requests() == 0);
  auto preflight =
      run_command({KPSD_BIN, "--config", rig.config_path(), "--check-config", "--preflight"},
                  rig.dir().path().string(), 30s);
  CHECK_MESSAGE(preflight.exit_code == 0, preflight.err);
  CHECK(preflight.out.find("preflight ok: ") != std::string::npos);
  CHECK(preflight.out.find("[" + via + "]") != std::string::npos);
  CHECK(proxy.requests("CONNECT 127.0.0.1:" + std::to_string(rig.fake().port())) == 1);
}
