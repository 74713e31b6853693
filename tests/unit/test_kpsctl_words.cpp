// kpsctl's words: durations in and out, and the did-you-mean of its error lines.
#include "ctl/cli_checks.hpp"
#include "ctl/durations.hpp"

#include <doctest/doctest.h>

using namespace kpsd::ctl;

TEST_CASE("durations: 90s 5m 1h30m 7d in - bare numbers only where seconds are the custom") {
  CHECK(parse_duration_ms("90s") == 90'000);
  CHECK(parse_duration_ms("5m") == 300'000);
  CHECK(parse_duration_ms("1h30m") == 5'400'000);
  CHECK(parse_duration_ms("2d12h") == 216'000'000);
  CHECK(parse_duration_ms("2w") == 1'209'600'000);
  CHECK(parse_duration_ms("250ms") == 250);
  CHECK(parse_duration_ms("1m30s500ms") == 90'500);
  CHECK(parse_duration_ms("0s") == 0);
  CHECK(parse_duration_ms("60", BareNumber::seconds) == 60'000);
  CHECK_FALSE(parse_duration_ms("60"));                         // refused by default
  CHECK_FALSE(parse_duration_ms("1h60", BareNumber::seconds));  // a bare number only alone
  for (const char* bad : {"", "s", "5", "5x", "-5m", "1.5h", "30m1h", "1h1h", "5 m", "5M",
                          "99999999999999999999s", "36500001d", "m5"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_duration_ms(bad));
  }
}

TEST_CASE("durations: printed the way a person reads them") {
  CHECK(format_duration_ms(-5) == "0ms");
  CHECK(format_duration_ms(350) == "350ms");
  CHECK(format_duration_ms(12'560) == "12.5s");
  CHECK(format_duration_ms(59'999) == "59.9s");
  CHECK(format_duration_ms(303'000) == "5m03s");
  CHECK(format_duration_ms(3'720'000) == "1h02m");
  CHECK(format_duration_ms(7'200'000) == "2h00m");
  CHECK(format_duration_ms(183'600'000) == "2d03h");
}

TEST_CASE("did you mean: a swap or two edits away - nothing for a word far from all") {
  std::vector<std::string> commands{"enqueue", "list", "show", "stats", "retry", "resume"};
  CHECK(did_you_mean("lsit", commands) == " (did you mean `list`?)");
  CHECK(did_you_mean("stat", commands) == " (did you mean `stats`?)");
  CHECK(did_you_mean("enqeue", commands) == " (did you mean `enqueue`?)");
  CHECK(did_you_mean("retyr", commands) == " (did you mean `retry`?)");
  CHECK(did_you_mean("frobnicate", commands).empty());
  CHECK(did_you_mean("x", commands).empty());
}
