// Where kpsd.conf sends kpsd: the region table, endpoints derived from kps.region, kps.proxy, the
// project lookup's answers, and the traps of a sample file (config/regions.cpp, config/proxy.cpp).
#include "auth/credential_answers.hpp"
#include "config/config.hpp"
#include "config/config_keys.hpp"
#include "config/regions.hpp"
#include "net/fd_limit.hpp"
#include "result_strings.hpp"
#include "temp_dir.hpp"
#include "config_helpers.hpp"

#include <doctest/doctest.h>

#include <fstream>
#include <set>

using namespace kpsd;
using namespace kpsd::test;
using namespace std::chrono_literals;

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
  auto found = matching_projects(
      R"({"projects":[{"id":"a1","name":"cn-north-4"},{"id":"b2","name":"cn-north-4_sub"},)"
      R"({"id":"c3","name":"CN-NORTH-4"},{"id":4,"name":"cn-north-4"},{"name":"cn-north-4"},)"
      R"("x",{"id":"d5","name":"cn-north-4","enabled":false}]})",
      "cn-north-4");
  REQUIRE(found);
  REQUIRE(found->size() == 2);
  CHECK((*found)[0].id == "a1");
  CHECK((*found)[1].id == "d5");
  auto none = matching_projects(R"({"projects":[]})", "cn-north-4");
  REQUIRE(none);
  CHECK(none->empty());
  auto wrong = matching_projects(R"({"project":[]})", "cn-north-4");
  REQUIRE_FALSE(wrong);
  CHECK(wrong.error().message.find("not {\"projects\"") != std::string::npos);
  CHECK_FALSE(matching_projects("<html>", "cn-north-4"));
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
