// The metadata service's answers as the SDKs read them (lib/auth/credential_answers.hpp): the
// expires_at forms IAM writes, the securitykey body, and when kpsd fetches a new key pair.
#include "auth/credential_answers.hpp"
#include "result_strings.hpp"

#include <doctest/doctest.h>

using namespace kpsd;
using SysClock = std::chrono::system_clock;

TEST_CASE("expires_at: IAM's form with microseconds - without a fraction - refusals") {
  // 2020-01-08T03:50:07Z is 1578455407 (date -u -d 2020-01-08T03:50:07Z +%s).
  auto t = parse_expires_at("2020-01-08T03:50:07.574000Z");
  REQUIRE(t);
  CHECK(std::chrono::duration_cast<std::chrono::microseconds>(t->time_since_epoch()).count() ==
        1578455407574000);
  auto whole = parse_expires_at("2020-01-08T03:50:07Z");
  REQUIRE(whole);
  CHECK(SysClock::to_time_t(*whole) == 1578455407);
  auto nanos = parse_expires_at("2020-01-08T03:50:07.123456789Z");  // below a microsecond dropped
  REQUIRE(nanos);
  CHECK(std::chrono::duration_cast<std::chrono::microseconds>(nanos->time_since_epoch()).count() ==
        1578455407123456);
  CHECK(parse_expires_at("2020-01-08T03:50:07.5Z").has_value());
  CHECK_FALSE(parse_expires_at("2020-01-08T03:50:07"));  // no Z: not UTC
  CHECK_FALSE(parse_expires_at("2020-01-08 03:50:07Z"));
  CHECK_FALSE(parse_expires_at("2020-01-08T03:50:07+08:00"));
  CHECK_FALSE(parse_expires_at("2020-01-08T03:50:07.Z"));
  CHECK_FALSE(parse_expires_at("2020-01-08T03:50:07.12aZ"));
  CHECK_FALSE(parse_expires_at(""));
  CHECK_FALSE(parse_expires_at("1578455407"));
  CHECK_FALSE(parse_expires_at("4040-01-08T03:50:07Z"));  // found by fuzz_credential_answers
  CHECK_FALSE(parse_expires_at("1969-12-31T23:59:59Z"));
}

TEST_CASE("securitykey answer: the four fields - a clear reason without any value") {
  auto c = parse_securitykey_body(
      R"({"credential":{"access":"HSTAK","secret":"sk-value","securitytoken":"tok-value",)"
      R"("expires_at":"2026-11-30T12:00:00.000000Z"}})");
  REQUIRE(c);
  CHECK(c->keys.access_key.reveal() == "HSTAK");
  CHECK(c->keys.secret_key.reveal() == "sk-value");
  CHECK(c->keys.security_token.reveal() == "tok-value");
  CHECK(SysClock::to_time_t(c->expires_at) == 1796040000);

  struct Bad {
    const char* body;
    const char* why;
  };
  const Bad bad[] = {
      {"not json", "not {\"credential\""},
      {R"({"access":"a"})", "not {\"credential\""},
      {R"({"credential":"x"})", "not {\"credential\""},
      {R"({"credential":{"secret":"s-1","securitytoken":"t","expires_at":"2026-11-30T12:00:00Z"}})",
       "credential.access is missing"},
      {R"({"credential":{"access":"a","secret":"","securitytoken":"t","expires_at":"x"}})",
       "credential.secret is missing, empty"},
      {R"({"credential":{"access":"a","secret":"s-2","securitytoken":7,"expires_at":"x"}})",
       "credential.securitytoken is missing, empty or not a string"},
      {R"({"credential":{"access":"a","secret":"s-3","securitytoken":"t","expires_at":"soon"}})",
       "credential.expires_at is not a UTC time"},
  };
  for (const Bad& b : bad) {
    CAPTURE(b.body);
    auto refused = parse_securitykey_body(b.body);
    REQUIRE_FALSE(refused);
    const std::string& why = refused.error().message;
    CHECK(why.find(b.why) != std::string::npos);
    CHECK(why.find("s-") == std::string::npos);  // no secret value in the reason
  }
}

TEST_CASE("refresh time: 2 h before the end as the Go SDK - halfway for a short-lived pair") {
  auto now = SysClock::from_time_t(1796000000);
  CHECK(refresh_time(now, now + std::chrono::hours(24)) == now + std::chrono::hours(22));
  CHECK(refresh_time(now, now + std::chrono::hours(4)) == now + std::chrono::hours(2));
  CHECK(refresh_time(now, now + std::chrono::hours(1)) == now + std::chrono::minutes(30));
  CHECK(refresh_time(now, now + std::chrono::seconds(4)) == now + std::chrono::seconds(2));
  CHECK(refresh_time(now, now - std::chrono::seconds(4)) <= now);  // already over: at once
}
