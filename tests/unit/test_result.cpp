// core/result.hpp: kpsd's one form for an expected failure.
#include "core/result.hpp"
#include "result_strings.hpp"

#include <doctest/doctest.h>

#include <stdexcept>
#include <string>

namespace {

kpsd::Result<std::string> word_or_failure(bool ok) {
  if (!ok) return kpsd::fail("no word");
  return std::string("word");
}

kpsd::Result<void> done_or_failure(bool ok) {
  if (!ok) return kpsd::fail("not done");
  return {};
}

}  // namespace

TEST_CASE("result: a Result<std::string> holds a string as its value, a failure as its error") {
  auto good = word_or_failure(true);
  REQUIRE(good);
  CHECK(*good == "word");
  auto bad = word_or_failure(false);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message == "no word");
}

TEST_CASE("result: Result<void> says done or why not") {
  CHECK(done_or_failure(true));
  auto bad = done_or_failure(false);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message == "not done");
}

TEST_CASE("result: value() of a failure is a caller that did not look, and throws logic_error") {
  auto bad = word_or_failure(false);
  CHECK_THROWS_AS((void)bad.value(), std::logic_error);
  CHECK_THROWS_WITH((void)bad.value(), "unchecked failure: no word");
  CHECK_THROWS_AS(done_or_failure(false).value(), std::logic_error);
}
