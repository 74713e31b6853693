#include "model/batch_brakes.hpp"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace kpsd {

std::string_view to_string(PauseReason r) noexcept {
  switch (r) {
    case PauseReason::operator_asked:
      return "operator";
    case PauseReason::canary:
      return "canary";
    case PauseReason::failures:
      return "failures";
  }
  return "operator";
}

std::optional<PauseReason> parse_pause_reason(std::string_view text) noexcept {
  for (auto r : {PauseReason::operator_asked, PauseReason::canary, PauseReason::failures}) {
    if (text == to_string(r)) return r;
  }
  return std::nullopt;
}

namespace {

std::string percent_text(double p) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.15g%%", p);
  return buffer;
}

}  // namespace

Result<Brakes> parse_max_failures(std::string_view text, Brakes brakes) {
  const std::string quoted = "`" + std::string(text) + "`";
  if (text.empty()) return fail("give a count of failed jobs (10) or a percentage (5%)");
  if (text.back() == '%') {
    std::string number(text.substr(0, text.size() - 1));
    // Digits and one point only: strtod alone would take " 5", "0x10" and "1e1".
    bool plain = !number.empty() && number.find_first_not_of("0123456789.") == std::string::npos &&
                 number.find('.') == number.rfind('.');
    char* end = nullptr;
    double p = plain ? std::strtod(number.c_str(), &end) : NAN;
    if (!plain || end != number.c_str() + number.size() || !std::isfinite(p) || p <= 0 ||
        p >= 100) {
      return fail(quoted + ": a percentage must be over 0% and under 100%");
    }
    brakes.max_failure_pct = p;
    brakes.max_failures.reset();
    return brakes;
  }
  std::int64_t n = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc{} || ptr != text.data() + text.size() || n < 0) {
    return fail(quoted + ": give a count of failed jobs (10), a percentage (5%), or 0 for none");
  }
  brakes.max_failures = n;  // 0: none (turns off a [queue] default)
  brakes.max_failure_pct.reset();
  return brakes;
}

std::string describe_max_failures(const Brakes& brakes) {
  if (brakes.max_failures) return std::to_string(*brakes.max_failures);
  if (brakes.max_failure_pct) return percent_text(*brakes.max_failure_pct);
  return {};
}

std::optional<std::string> failure_budget_spent(const Brakes& brakes, std::int64_t ended,
                                                std::int64_t failed) {
  const std::string tally = std::to_string(failed) + " of " + std::to_string(ended) +
                            " ended jobs failed (budget: " + describe_max_failures(brakes) + ")";
  if (brakes.max_failures) {
    if (*brakes.max_failures > 0 && failed >= *brakes.max_failures) return tally;
    return std::nullopt;
  }
  if (brakes.max_failure_pct) {
    if (ended < min_ended_for_percentage || ended <= 0) return std::nullopt;
    // 100 * failed > P * ended: no division, no rounding at the boundary.
    if (100.0 * static_cast<double>(failed) > *brakes.max_failure_pct * static_cast<double>(ended))
      return tally;
  }
  return std::nullopt;
}

}  // namespace kpsd
