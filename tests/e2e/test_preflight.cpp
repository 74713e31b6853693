// End to end: kpsd --check-config and --preflight: the files the configuration names, and one
// authenticated read that names what is wrong.
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

TEST_CASE("kpsd --check-config also reads the credential and CA files: a missing one is exit 78") {
  Rig good;
  auto ok = run_command({KPSD_BIN, "--config", good.config_path(), "--check-config"},
                        good.dir().path().string(), std::chrono::seconds(20));
  CHECK(ok.exit_code == 0);
  CHECK(ok.out.find(": ok") != std::string::npos);

  Rig no_token({.config = {{"auth.token_file", "/nonexistent/kps-token"}}});
  auto missing = run_command({KPSD_BIN, "--config", no_token.config_path(), "--check-config"},
                             no_token.dir().path().string(), std::chrono::seconds(20));
  CHECK(missing.exit_code == 78);
  CHECK(missing.err.find("cannot read token file /nonexistent/kps-token") != std::string::npos);
  CHECK(missing.out.empty());

  // The CA file is read for an https endpoint (nothing is called: port 9 is never reached).
  Rig no_ca({.config = {{"kps.endpoint", "https://127.0.0.1:9"},
                        {"kps.ca_file", "/nonexistent/ca.pem"}}});
  auto ca = run_command({KPSD_BIN, "--config", no_ca.config_path(), "--check-config"},
                        no_ca.dir().path().string(), std::chrono::seconds(20));
  CHECK(ca.exit_code == 78);
  CHECK(ca.err.find("/nonexistent/ca.pem") != std::string::npos);
}

TEST_CASE("kpsd --check-config --preflight makes one authenticated read and names what is wrong") {
  Rig rig;
  auto preflight = [&](const std::string& config) {
    return run_command({KPSD_BIN, "--config", config, "--check-config", "--preflight"},
                       rig.dir().path().string(), std::chrono::seconds(30));
  };
  auto ok = preflight(rig.config_path());
  CHECK_MESSAGE(ok.exit_code == 0, ok.err);
  CHECK(std::regex_search(ok.out, std::regex(": preflight ok: http://127.0.0.1:[0-9]+ accepted the "
                                             "credentials \\(GET failed-tasks: HTTP 200 in "
                                             "[0-9]+ ms, 0 failed tasks on record")));
  CHECK(rig.fake().disassociate_calls() == 0);  // read-only
  CHECK(rig.fake().violations().empty());

  // A token the service refuses: 77, with the gateway's code.
  rig.dir().write("token", "not-the-token\n");
  auto refused = preflight(rig.config_path());
  CHECK(refused.exit_code == 77);
  CHECK(refused.err.find("preflight credentials refused: HTTP 401 APIGW.0301") !=
        std::string::npos);
  CHECK(refused.err.find("not-the-token") == std::string::npos);
  rig.dir().write("token", std::string(token) + "\n");

  // Another project: 404 names the keys to check.
  std::string conf = slurp(rig.config_path());
  std::string other = conf;
  other.replace(other.find(project), 32, std::string(32, 'a'));
  auto wrong = preflight(rig.dir().write("other.conf", other));
  CHECK(wrong.exit_code == 78);
  CHECK(wrong.err.find("HTTP 404 APIGW.0101") != std::string::npos);
  CHECK(wrong.err.find("check kps.endpoint and kps.project_id") != std::string::npos);

  // Nobody listening: 69.
  std::string closed = conf;
  std::smatch m;
  REQUIRE(std::regex_search(conf, m, std::regex("endpoint = (http://127.0.0.1:[0-9]+)")));
  closed.replace(closed.find(m[1].str()), m[1].length(), "http://127.0.0.1:9");
  auto away = preflight(rig.dir().write("closed.conf", closed));
  CHECK(away.exit_code == 69);
  CHECK(away.err.find("cannot reach http://127.0.0.1:9") != std::string::npos);

  auto alone = run_command({KPSD_BIN, "--config", rig.config_path(), "--preflight"},
                           rig.dir().path().string(), std::chrono::seconds(10));
  CHECK(alone.exit_code == 64);  // --preflight needs --check-config
}
