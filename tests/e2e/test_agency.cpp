// End to end with [auth] method = ecs_agency against a fake metadata service that behaves as
// the ECS one (session token required, short-lived key pairs that overlap when rotated).
#include "e2e_rig.hpp"
#include "fake_metadata.hpp"

#include <doctest/doctest.h>

#include <thread>

using namespace kpsd;
using namespace kpsd::test;
using namespace std::chrono_literals;

namespace {

// kpsd on method ecs_agency against `metadata`; the fake KPS checks AK/SK signatures (its own
// initial key pair is never handed out: only the metadata service's are used).
RigOptions agency_options(const fake::FakeMetadata& metadata, std::string rate) {
  return {.fake = {.task_duration = 20ms, .ak = "HSTNEVERHANDEDOUT", .sk = "never-handed-out"},
          .config = {{"auth.method", "ecs_agency"},
                     {"auth.metadata_endpoint", metadata.url()},
                     {"queue.rate_per_second", std::move(rate)},
                     {"queue.backoff_initial_ms", "200"}}};
}

void check_all_succeeded_first_time(Rig& rig) {
  for (const auto& [id, row] : read_jobs(rig.db_path())) {
    CAPTURE(id);
    CHECK(row.state == "succeeded");
    CHECK(row.attempts == 1);
  }
}

}  // namespace

TEST_CASE("ecs_agency: key pairs rotated mid-run - no refused call - no lost job - session token") {
  fake::FakeMetadata metadata(3s);  // a 3 s key pair; a new one from 1.5 s before its end
  Rig rig(agency_options(metadata, "40"));
  metadata.pair_with(rig.fake());
  rig.start();
  std::vector<std::string> args{"enqueue"};
  for (int i = 0; i < 240; ++i) args.push_back("agency-" + std::to_string(i));  // 6 s of calls
  auto enq = rig.ctl(args);
  REQUIRE(enq.exit_code == 0);
  CHECK(rig.ctl({"wait", "--batch", Rig::batch_of(enq), "--timeout", "90"}).exit_code == 0);
  check_all_succeeded_first_time(rig);
  CHECK(rig.fake().disassociate_calls() == 240);
  CHECK(metadata.key_pairs_minted() >= 3);  // kpsd went through several
  CHECK(rig.fake().auth_refusals() == 0);   // and never used one past its end
  CHECK(metadata.session_tokens_issued() >= 1);
  CHECK(metadata.refused_reads() == 0);  // every securitykey read carried the session token
  CHECK(metadata.securitykey_reads() >= metadata.key_pairs_minted());
  CHECK(metadata.securitykey_reads() <= 20);  // refreshed ahead, not per call
  CHECK(metadata.violations().empty());
  CHECK(rig.fake().violations().empty());
  std::string log = rig.log();
  CHECK(log.find("agency credentials from the metadata service: valid until") != std::string::npos);
  CHECK(log.find(metadata.last_security_token().substr(0, 24)) == std::string::npos);
  CHECK(log.find("agency-secret-") == std::string::npos);
}

TEST_CASE("ecs_agency: a metadata outage past the key pair's end blocks calls - then they resume") {
  fake::FakeMetadata metadata(3s);
  Rig rig(agency_options(metadata, "20"));
  metadata.pair_with(rig.fake());
  rig.start();
  auto first = rig.ctl({"enqueue", "before-outage"});
  REQUIRE(first.exit_code == 0);
  CHECK(rig.ctl({"wait", "--batch", Rig::batch_of(first), "--timeout", "30"}).exit_code == 0);

  metadata.set_outage(true);
  std::this_thread::sleep_for(3500ms);  // the key pair kpsd holds has ended meanwhile
  auto second = rig.ctl({"enqueue", "during-1", "during-2", "during-3"});
  REQUIRE(second.exit_code == 0);
  wait_until(
      [&] {
        return rig.log().find("calls paused: ECS metadata credentials:") != std::string::npos;
      },
      20s, "calls paused for the metadata outage");
  std::this_thread::sleep_for(1s);
  CHECK(rig.log().find("503") != std::string::npos);  // the reason names what the service said
  CHECK(rig.fake().disassociate_calls() == 1);        // nothing went out meanwhile

  metadata.set_outage(false);
  CHECK(rig.ctl({"wait", "--batch", Rig::batch_of(second), "--timeout", "60"}).exit_code == 0);
  check_all_succeeded_first_time(rig);  // the wait used no attempt
  CHECK(rig.fake().auth_refusals() == 0);
  CHECK(metadata.outage_refusals() >= 1);
  CHECK(rig.fake().violations().empty());
}
