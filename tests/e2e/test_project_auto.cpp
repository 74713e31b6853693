// kps.project_id = auto against the fake IAM's GET /v3/projects?name=: one project named after
// the region is used; none or several stop kpsd with exit 78 listing what IAM returned.
#include "e2e_rig.hpp"

#include <doctest/doctest.h>

using namespace kpsd;
using namespace kpsd::test;
using namespace std::chrono_literals;

namespace {

std::map<std::string, std::string> auto_config(std::map<std::string, std::string> extra = {}) {
  std::map<std::string, std::string> c{{"kps.project_id", "auto"},
                                       {"kps.region", "cn-north-4"},
                                       {"auth.iam_endpoint", "http://{fake}"}};
  c.insert(extra.begin(), extra.end());
  return c;
}

CommandResult run_kpsd(Rig& rig) {
  return run_command({KPSD_BIN, "--config", rig.config_path()}, rig.dir().path().string(), 30s);
}

}  // namespace

TEST_CASE(
    "project_id auto: the region's one project is used - signed with AK/SK - no X-Project-Id") {
  Rig rig({.fake = {.task_duration = 20ms,
                    .ak = "AKPROJECTLOOKUP01",
                    .sk = "sk-project-lookup",
                    .projects = {{"ffffffffffffffffffffffffffffffff", "cn-north-1"},
                                 {project, "cn-north-4"},
                                 {"eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee", "cn-north-4_sub"}}},
           .config = auto_config(
               {{"auth.method", "aksk"}, {"auth.ak_file", "ak"}, {"auth.sk_file", "sk"}})});
  rig.dir().write("ak", "AKPROJECTLOOKUP01\n");
  rig.dir().write("sk", "sk-project-lookup\n");
  std::vector<std::string> env{"CREDENTIALS_DIRECTORY=" + rig.dir().path().string()};
  rig.start(env);
  auto enq = rig.ctl({"enqueue", "auto-1", "auto-2"});
  REQUIRE(enq.exit_code == 0);
  CHECK(rig.ctl({"wait", "--batch", Rig::batch_of(enq), "--timeout", "60"}).exit_code == 0);
  CHECK(rig.fake().disassociate_calls() == 2);  // under /v3/{the project found}/
  CHECK(rig.fake().project_lookups() == 1);     // once, at start
  CHECK(rig.fake().violations().empty());
  CHECK(rig.log().find("project_id = auto: project " + project +
                       " (cn-north-4) from IAM http://") != std::string::npos);
}

TEST_CASE("project_id auto: no project or two named after the region is exit 78 naming them") {
  {
    Rig rig({.fake = {.projects = {{"ffffffffffffffffffffffffffffffff", "cn-north-1"}}},
             .config = auto_config()});
    auto r = run_kpsd(rig);
    CHECK(r.exit_code == 78);
    CHECK(r.err.find("has no project named cn-north-4") != std::string::npos);
    CHECK(rig.fake().project_lookups() == 1);
  }
  Rig rig({.fake = {.projects = {{project, "cn-north-4"},
                                 {"dddddddddddddddddddddddddddddddd", "cn-north-4"}}},
           .config = auto_config()});
  auto r = run_kpsd(rig);
  CHECK(r.exit_code == 78);
  CHECK(r.err.find("has 2 projects named cn-north-4 (" + project +
                   ", dddddddddddddddddddddddddddddddd): set kps.project_id") != std::string::npos);
  auto check =
      run_command({KPSD_BIN, "--config", rig.config_path(), "--check-config", "--preflight"},
                  rig.dir().path().string(), 30s);
  CHECK(check.exit_code == 78);
  CHECK(check.err.find("has 2 projects named cn-north-4") != std::string::npos);
  CHECK(rig.fake().violations().empty());
}
